//! Build tool of the package (not installed): writes eniroute(8), eniroute.toml(5) and the
//! bash, zsh and fish completions under DIR, generated from the clap definitions.

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: eniroute-manual DIR");
        std::process::exit(eniroute::exit::USAGE);
    };
    match eniroute::manual::write_assets(eniroute::cli::command(), std::path::Path::new(&dir)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
        }
        Err(e) => {
            eprintln!("error: cannot write the manual: {e}");
            std::process::exit(eniroute::exit::FAILED);
        }
    }
}
