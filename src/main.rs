fn main() {
    std::process::exit(eniroute::cli::main());
}
