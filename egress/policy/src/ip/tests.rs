use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;
use IpClass::*;

fn c(s: &str) -> IpClass {
    classify(s.parse::<IpAddr>().unwrap())
}

fn emb(s: &str) -> IpClass {
    V6Embedded(s.parse().unwrap())
}

/// Every range with a row just inside each edge and just outside it.
#[test]
fn ipv4_boundaries() {
    let rows: &[(&str, IpClass)] = &[
        ("0.0.0.0", Unspecified),
        ("0.255.255.255", Unspecified),
        ("1.0.0.0", Global),
        ("9.255.255.255", Global),
        ("10.0.0.0", Private),
        ("10.255.255.255", Private),
        ("11.0.0.0", Global),
        ("100.63.255.255", Global),
        ("100.64.0.0", SharedCgnat),
        ("100.127.255.255", SharedCgnat),
        ("100.128.0.0", Global),
        ("100.100.100.199", SharedCgnat),
        ("100.100.100.200", Metadata),
        ("100.100.100.201", SharedCgnat),
        ("126.255.255.255", Global),
        ("127.0.0.0", Loopback),
        ("127.0.0.1", Loopback),
        ("127.255.255.255", Loopback),
        ("128.0.0.0", Global),
        ("168.63.129.15", Global),
        ("168.63.129.16", Metadata),
        ("168.63.129.17", Global),
        ("169.253.255.255", Global),
        ("169.254.0.0", LinkLocal),
        ("169.254.169.253", LinkLocal),
        ("169.254.169.254", Metadata),
        ("169.254.169.255", LinkLocal),
        ("169.254.170.2", Metadata),
        ("169.254.170.23", Metadata),
        ("169.254.255.255", LinkLocal),
        ("169.255.0.0", Global),
        ("172.15.255.255", Global),
        ("172.16.0.0", Private),
        ("172.31.255.255", Private),
        ("172.32.0.0", Global),
        ("191.255.255.255", Global),
        ("192.0.0.0", ProtocolAssignment),
        ("192.0.0.191", ProtocolAssignment),
        ("192.0.0.192", Metadata),
        ("192.0.0.255", ProtocolAssignment),
        ("192.0.1.0", Global),
        ("192.0.2.0", Documentation),
        ("192.0.2.255", Documentation),
        ("192.0.3.0", Global),
        ("192.31.195.255", Global),
        ("192.31.196.0", Reserved),
        ("192.31.197.0", Global),
        ("192.52.193.0", Reserved),
        ("192.52.194.0", Global),
        ("192.88.98.255", Global),
        ("192.88.99.0", Reserved),
        ("192.88.100.0", Global),
        ("192.167.255.255", Global),
        ("192.168.0.0", Private),
        ("192.168.255.255", Private),
        ("192.169.0.0", Global),
        ("192.175.48.0", Reserved),
        ("192.175.49.0", Global),
        ("198.17.255.255", Global),
        ("198.18.0.0", Benchmarking),
        ("198.19.255.255", Benchmarking),
        ("198.20.0.0", Global),
        ("198.51.99.255", Global),
        ("198.51.100.0", Documentation),
        ("198.51.101.0", Global),
        ("203.0.112.255", Global),
        ("203.0.113.0", Documentation),
        ("203.0.114.0", Global),
        ("223.255.255.255", Global),
        ("224.0.0.0", Multicast),
        ("239.255.255.255", Multicast),
        ("240.0.0.0", Reserved),
        ("255.255.255.254", Reserved),
        ("255.255.255.255", Broadcast),
        ("8.8.8.8", Global),
    ];
    for (ip, want) in rows {
        assert_eq!(c(ip), *want, "{ip}");
    }
}

#[test]
fn ipv6_boundaries() {
    let rows: &[(&str, IpClass)] = &[
        ("::", Unspecified),
        ("::1", Loopback),
        ("::2", emb("0.0.0.2")),
        ("::ffff:ffff", emb("255.255.255.255")),
        ("::1:0:0", Reserved),
        ("::ffff:127.0.0.1", Loopback),
        ("::ffff:169.254.169.254", Metadata),
        ("::ffff:8.8.8.8", Global),
        ("::fffe:ffff:ffff", Reserved),
        ("::ffff:0:7f00:1", emb("127.0.0.1")),
        ("::ffff:0:808:808", emb("8.8.8.8")),
        ("64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
        ("64:ff9b::", emb("0.0.0.0")),
        ("64:ff9b::7f00:1", emb("127.0.0.1")),
        ("64:ff9b::a9fe:a9fe", emb("169.254.169.254")),
        ("64:ff9b::ffff:ffff", emb("255.255.255.255")),
        ("64:ff9b::1:0:0", Reserved),
        ("64:ff9b:1::808:808", emb("8.8.8.8")),
        ("64:ff9b:1:ffff:ffff:ffff:a00:1", emb("10.0.0.1")),
        ("64:ff9b:2::", Reserved),
        ("100::", Reserved),
        ("100::ffff:ffff:ffff:ffff", Reserved),
        ("100:0:0:1::", Reserved),
        ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
        ("2000::", Global),
        ("2001::", emb("255.255.255.255")),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", emb("192.0.2.45")),
        ("2001:0:ffff:ffff:ffff:ffff:80ff:fffe", emb("127.0.0.1")),
        ("2001:1::1", Reserved),
        ("2001:2::", Benchmarking),
        ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
        ("2001:200::", Global),
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", Global),
        ("2001:db8::", Documentation),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", Documentation),
        ("2001:db9::", Global),
        ("2001:4860:4860::8888", Global),
        ("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Global),
        ("2002::", emb("0.0.0.0")),
        ("2002:7f00:1::", emb("127.0.0.1")),
        ("2002:a9fe:a9fe:1234::1", emb("169.254.169.254")),
        (
            "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            emb("255.255.255.255"),
        ),
        ("2003::", Global),
        ("2620:4f:8000::", Reserved),
        ("2620:4f:8001::", Global),
        ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Global),
        ("3fff::", Documentation),
        ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", Documentation),
        ("3fff:1000::", Global),
        ("4000::", Reserved),
        ("5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
        ("5f00::", Reserved),
        ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
        ("fc00::", Private),
        ("fd00:ec2::253", Private),
        ("fd00:ec2::254", Metadata),
        ("fd00:ec2::255", Private),
        ("fd00:ec2::23", Metadata),
        ("fd20:ce::254", Metadata),
        ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Private),
        ("fe00::", Reserved),
        ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
        ("fe80::", LinkLocal),
        ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", LinkLocal),
        ("fec0::", SiteLocal),
        ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", SiteLocal),
        ("ff00::", Multicast),
        ("ff02::1", Multicast),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Multicast),
    ];
    for (ip, want) in rows {
        assert_eq!(c(ip), *want, "{ip}");
    }
}

#[test]
fn canonical_unwraps_only_mapped() {
    let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
    assert_eq!(canonical(mapped), IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
    for other in ["::10.1.2.3", "64:ff9b::a01:203", "2002:a01:203::", "::1"] {
        let ip: IpAddr = other.parse().unwrap();
        assert_eq!(canonical(ip), ip, "{other}");
    }
}

#[test]
fn embedded_v4_unwraps_every_embedding() {
    let rows: &[(&str, Option<&str>)] = &[
        ("::ffff:1.2.3.4", Some("1.2.3.4")),
        ("::1.2.3.4", Some("1.2.3.4")),
        ("::ffff:0:1.2.3.4", Some("1.2.3.4")),
        ("64:ff9b::1.2.3.4", Some("1.2.3.4")),
        ("64:ff9b:1::1.2.3.4", Some("1.2.3.4")),
        ("2002:102:304::", Some("1.2.3.4")),
        ("2001:0:0:0:0:0:fefd:fcfb", Some("1.2.3.4")),
        ("::", None),
        ("::1", None),
        ("2003::1.2.3.4", None),
    ];
    for (ip, want) in rows {
        let want = want.map(|w| w.parse::<Ipv4Addr>().unwrap());
        assert_eq!(embedded_v4(ip.parse().unwrap()), want, "{ip}");
    }
}

/// Every table row's first address classifies as that row (or as a more specific row nested in
/// it), so no row is shadowed by a typo.
#[test]
fn every_row_is_reachable() {
    for (net, class) in registry::v4_rows() {
        let got = classify(IpAddr::V4(net.network()));
        let nested = registry::v4_rows().iter().any(|(other, _)| {
            other.prefix_len() > net.prefix_len() && other.contains(&net.network())
        });
        assert!(got == *class || nested, "{net}: {got:?}");
    }
    for (net, _) in registry::v6_rows() {
        assert!(!classify(IpAddr::V6(net.network())).is_global(), "{net}");
    }
}

#[test]
fn codes_are_stable_and_only_global_is_global() {
    assert_eq!(Metadata.as_str(), "metadata");
    assert_eq!(emb("1.2.3.4").as_str(), "embedded_ipv4");
    assert!(Global.is_global());
    for class in [
        Loopback,
        Private,
        LinkLocal,
        Metadata,
        Unspecified,
        emb("8.8.8.8"),
    ] {
        assert!(!class.is_global(), "{class}");
    }
    for class in [
        Loopback,
        LinkLocal,
        Metadata,
        Unspecified,
        Multicast,
        Broadcast,
        emb("8.8.8.8"),
    ] {
        assert!(!class.policy_admissible(), "{class}");
    }
}

proptest! {
    #[test]
    fn mapped_classifies_as_v4(bits in any::<u32>()) {
        let v4 = Ipv4Addr::from(bits);
        prop_assert_eq!(classify(IpAddr::V6(v4.to_ipv6_mapped())), classify(IpAddr::V4(v4)));
    }

    #[test]
    fn nat64_of_non_global_is_never_global(bits in any::<u32>()) {
        let v4 = Ipv4Addr::from(bits);
        let [a, b, c, d] = v4.octets();
        let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
        prop_assert_eq!(classify(IpAddr::V6(nat64)), V6Embedded(v4));
    }

    #[test]
    fn classify_is_total(bits in any::<u128>()) {
        let _ = classify(IpAddr::V6(Ipv6Addr::from(bits))).as_str();
    }
}
