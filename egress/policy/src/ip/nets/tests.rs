use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;

use super::*;
use crate::ip::registry::{v4_rows, v6_rows};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// Every address of `net`, one by one (only for small nets).
fn every_address(net: IpNet) -> impl Iterator<Item = IpAddr> {
    net.subnets(net.max_prefix_len())
        .unwrap()
        .map(|host| host.network())
}

/// Asserts both helpers against a walk over every address of `net`.
fn agrees_with_every_address(net: IpNet) {
    let classes: Vec<IpClass> = every_address(net).map(classify).collect();
    let global = classes.iter().all(IpClass::is_global);
    assert_eq!(net_is_global(&net), global, "net_is_global({net})");
    let never = classes.iter().all(|c| !c.policy_admissible());
    let got = net_never_admissible(&net);
    assert_eq!(
        got.is_some(),
        never,
        "net_never_admissible({net}) = {got:?}"
    );
    if let Some(class) = got {
        assert_eq!(class, classes[0], "{net}: the first address's class");
    }
}

#[test]
fn examples() {
    let never: &[(&str, Option<IpClass>)] = &[
        ("169.254.169.254/32", Some(IpClass::Metadata)),
        ("127.0.0.0/8", Some(IpClass::Loopback)),
        ("169.254.0.0/16", Some(IpClass::LinkLocal)),
        ("0.0.0.0/8", Some(IpClass::Unspecified)),
        ("0.0.0.0/32", Some(IpClass::Unspecified)),
        ("224.0.0.0/4", Some(IpClass::Multicast)),
        ("255.255.255.255/32", Some(IpClass::Broadcast)),
        ("::1/128", Some(IpClass::Loopback)),
        ("::/128", Some(IpClass::Unspecified)),
        ("fe80::/10", Some(IpClass::LinkLocal)),
        ("fd00:ec2::254/128", Some(IpClass::Metadata)),
        ("::ffff:127.0.0.0/104", Some(IpClass::Loopback)),
        ("::ffff:169.254.169.254/128", Some(IpClass::Metadata)),
        ("ff00::/8", Some(IpClass::Multicast)),
        ("10.0.0.0/8", None),
        ("10.213.0.0/16", None),
        ("0.0.0.0/0", None),
        ("::/0", None),
        ("100.64.0.0/10", None),
        ("169.254.169.254/31", Some(IpClass::Metadata)),
        ("169.254.169.252/30", Some(IpClass::LinkLocal)),
        ("169.254.169.0/24", Some(IpClass::LinkLocal)),
        ("127.0.0.0/7", None),
        ("8.8.8.8/32", None),
    ];
    for (cidr, want) in never {
        assert_eq!(net_never_admissible(&net(cidr)), *want, "{cidr}");
    }
    let global: &[(&str, bool)] = &[
        ("8.8.8.0/24", true),
        ("8.0.0.0/7", true),
        ("1.0.0.0/8", true),
        ("100.128.0.0/9", true),
        ("2606:4700::/32", true),
        ("::ffff:8.8.8.0/120", true),
        ("0.0.0.0/0", false),
        ("::/0", false),
        ("2000::/3", false),
        ("10.0.0.0/8", false),
        ("100.64.0.0/10", false),
        ("192.0.0.0/24", false),
        ("192.0.0.0/16", false),
        ("168.63.129.16/32", false),
        ("168.63.0.0/16", false),
        ("2001:db8::/32", false),
        ("2002::/16", false),
        ("64:ff9b::808:808/128", false),
        ("4000::/3", false),
    ];
    for (cidr, want) in global {
        assert_eq!(net_is_global(&net(cidr)), *want, "{cidr}");
    }
}

#[test]
fn every_table_row_and_its_neighbours_agree_with_every_address() {
    let mut nets: Vec<IpNet> = Vec::new();
    for (row, _) in v4_rows() {
        let row = IpNet::V4(*row);
        for len in row.prefix_len().saturating_sub(4)..=32 {
            nets.push(IpNet::new(row.network(), len).unwrap().trunc());
        }
    }
    for (row, _) in v6_rows() {
        let row = IpNet::V6(*row);
        for len in row.prefix_len().max(112)..=128 {
            nets.push(IpNet::new(row.network(), len).unwrap().trunc());
        }
    }
    nets.sort_unstable();
    nets.dedup();
    for net in nets
        .into_iter()
        .filter(|n| n.max_prefix_len() - n.prefix_len() <= 16)
    {
        agrees_with_every_address(net);
    }
}

proptest! {
    #[test]
    fn small_v4_nets_agree_with_every_address(addr in any::<[u8; 4]>(), len in 18u8..=32) {
        agrees_with_every_address(IpNet::new(IpAddr::from(addr), len).unwrap().trunc());
    }

    #[test]
    fn small_v6_nets_agree_with_every_address(addr in any::<[u8; 16]>(), len in 116u8..=128) {
        agrees_with_every_address(IpNet::new(IpAddr::from(addr), len).unwrap().trunc());
    }

    #[test]
    fn never_panics_and_a_global_net_is_admissible(addr in any::<[u8; 16]>(), len in 0u8..=128) {
        let net = IpNet::new(IpAddr::from(addr), len).unwrap();
        if net_is_global(&net) {
            prop_assert!(net_never_admissible(&net).is_none());
        }
    }
}
