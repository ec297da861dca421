//! Rules across ENIs: at most one primary; no name, MAC, interface, address or EIP twice; no
//! prefix holding another ENI's address or overlapping its prefix. The "appears twice" rule is
//! [`AddressBook`], shared with discover. May import the raw types, rules and `crate::model`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;

use ipnetwork::Ipv4Network;
use macaddr::MacAddr6;

use super::Validator;
use crate::config::blocks::Blocks;
use crate::config::raw::{RawEni, S};
use crate::config::rules::AddressBook;
use crate::model::{mac_text, Eni};

/// Where an address was first declared.
struct Seen {
    what: &'static str,
    eni: String,
    line: usize,
}

impl Validator {
    /// Every rule across ENIs; the address rules only when every ENI is valid.
    pub(super) fn cross_eni(&mut self, raw: &[S<RawEni>], enis: &[Eni], all_valid: bool) {
        self.one_primary(raw);
        self.unique_identities(raw);
        if !all_valid {
            return;
        }
        let book = self.unique_addresses(raw, enis);
        self.prefixes_apart(raw, enis, &book);
        self.ipv6_prefixes_apart(raw, enis, &book);
    }

    fn one_primary(&mut self, raw: &[S<RawEni>]) {
        let primaries: Vec<&S<RawEni>> = raw.iter().filter(|e| e.get_ref().is_primary()).collect();
        if let (None, Some(first)) = (primaries.first(), raw.first()) {
            self.warn(
                &first.span(),
                "no ENI has primary = true: if the instance's primary ENI is declared, mark it \
                 (it then gets the primary's limits checked: nat mode, one EIP); if it is left \
                 out on purpose, this is fine",
            );
        }
        if let Some(second) = primaries.get(1) {
            let names: Vec<String> = primaries
                .iter()
                .map(|e| e.get_ref().name.get_ref().clone())
                .collect();
            self.err(
                &second.span(),
                format!("at most one ENI may be primary; {} are", names.join(", ")),
            );
        }
    }

    /// No name, MAC or interface twice.
    fn unique_identities(&mut self, raw: &[S<RawEni>]) {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut macs: HashMap<String, (String, usize)> = HashMap::new();
        let mut ifnames: HashMap<String, (String, usize)> = HashMap::new();
        for e in raw {
            let r = e.get_ref();
            let name = r.name.get_ref().clone();
            let line = self.line(&r.name.span());
            if let Some(first) = names.insert(name.clone(), line) {
                self.err(
                    &r.name.span(),
                    format!("eni name {name:?} appears twice (first at line {first})"),
                );
            }
            if let Some(m) = &r.mac {
                if let Ok(mac) = m.get_ref().trim().parse::<MacAddr6>() {
                    let key = mac_text(mac);
                    if let Some((other, l)) = macs.insert(key.clone(), (name.clone(), line)) {
                        self.err(
                            &m.span(),
                            format!(
                                "eni {name:?}: mac {key} appears twice (also eni {other:?}, line {l})"
                            ),
                        );
                    }
                }
            }
            if let Some(i) = &r.interface {
                let key = i.get_ref().clone();
                if let Some((other, l)) = ifnames.insert(key.clone(), (name.clone(), line)) {
                    self.err(
                        &i.span(),
                        format!(
                            "eni {name:?}: interface {key:?} appears twice (also eni {other:?}, \
                             line {l})"
                        ),
                    );
                }
            }
        }
    }

    /// Every private IP, IPv6 address and EIP is unique across the file.
    fn unique_addresses(&mut self, raw: &[S<RawEni>], enis: &[Eni]) -> AddressBook<Seen> {
        let mut book: AddressBook<Seen> = AddressBook::new();
        for (e, re) in enis.iter().zip(raw) {
            let r = re.get_ref();
            let mut claims: Vec<(IpAddr, &'static str, Range<usize>)> = Vec::new();
            for (ip, s) in e.private_ips.iter().zip(&r.private_ips) {
                claims.push((IpAddr::V4(*ip), "private IP", s.span()));
            }
            for (ip, s) in e.ipv6.iter().zip(&r.ipv6) {
                claims.push((IpAddr::V6(*ip), "IPv6 address", s.span()));
            }
            for (eip, s) in e.eips.iter().zip(&r.eip) {
                let span = s.get_ref().address.span();
                claims.push((IpAddr::V4(eip.address), "EIP", span));
            }
            for (ip, what, span) in claims {
                let seen = Seen {
                    what,
                    eni: e.name.clone(),
                    line: self.line(&span),
                };
                if let Some(s) = book.claim(ip, seen) {
                    let msg = format!(
                        "eni {:?}: {what} {ip} appears twice (also {} of eni {:?}, line {})",
                        e.name, s.what, s.eni, s.line
                    );
                    self.err(&span, msg);
                }
            }
        }
        book
    }

    /// No prefix holds another ENI's address or overlaps another ENI's prefix.
    fn prefixes_apart(&mut self, raw: &[S<RawEni>], enis: &[Eni], book: &AddressBook<Seen>) {
        let mut addresses = Blocks::new();
        for (ip, seen) in book.iter() {
            if let IpAddr::V4(v4) = ip {
                addresses.insert(Ipv4Network::from(*v4), seen.eni.as_str());
            }
        }
        let mut prefixes = Blocks::new();
        for e in enis {
            for p in &e.prefixes {
                prefixes.insert(*p, e.name.as_str());
            }
        }
        for (e, re) in enis.iter().zip(raw) {
            let other = |owner: &&str| *owner != e.name;
            let v4_raw = re.get_ref().prefixes.iter();
            let v4_raw = v4_raw.filter(|s| !super::eni::is_v6_text(s.get_ref()));
            for (p, s) in e.prefixes.iter().zip(v4_raw) {
                if let Some((ip, owner)) = addresses.overlapping(*p, other) {
                    let ip = ip.ip();
                    self.err(
                        &s.span(),
                        format!(
                            "eni {:?}: prefix {p} contains {ip} of eni {owner:?}",
                            e.name
                        ),
                    );
                }
                if let Some((o, owner)) = prefixes.overlapping(*p, other) {
                    self.err(
                        &s.span(),
                        format!(
                            "eni {:?}: prefix {p} overlaps prefix {o} of eni {owner:?}",
                            e.name
                        ),
                    );
                }
            }
        }
    }

    /// The same for IPv6 prefixes (few per ENI: compared pairwise).
    fn ipv6_prefixes_apart(&mut self, raw: &[S<RawEni>], enis: &[Eni], book: &AddressBook<Seen>) {
        for (e, re) in enis.iter().zip(raw) {
            let v6_raw = re.get_ref().prefixes.iter();
            let v6_raw = v6_raw.filter(|s| super::eni::is_v6_text(s.get_ref()));
            for (p, s) in e.ipv6_prefixes.iter().zip(v6_raw) {
                let held = book.iter().find_map(|(ip, seen)| match ip {
                    IpAddr::V6(v6) if p.contains(*v6) && seen.eni != e.name => {
                        Some((*v6, seen.eni.clone()))
                    }
                    _ => None,
                });
                if let Some((ip, owner)) = held {
                    let msg = format!(
                        "eni {:?}: prefix {p} contains {ip} of eni {owner:?}",
                        e.name
                    );
                    self.err(&s.span(), msg);
                }
                let others = enis.iter().filter(|o| o.name != e.name);
                let clash = others
                    .flat_map(|o| o.ipv6_prefixes.iter().map(move |q| (q, &o.name)))
                    .find(|(q, _)| q.overlaps(*p));
                if let Some((q, owner)) = clash {
                    let msg = format!(
                        "eni {:?}: prefix {p} overlaps prefix {q} of eni {owner:?}",
                        e.name
                    );
                    self.err(&s.span(), msg);
                }
            }
        }
    }
}
