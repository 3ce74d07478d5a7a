//! The allow list: which references it admits, pinned or not.

use super::*;

fn id(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn list(text: &str, require_pinned: bool) -> AllowList {
    AllowList {
        entries: AllowList::parse_entries(text).unwrap(),
        require_pinned,
    }
}

fn nothing_recorded(_: &str) -> Option<String> {
    None
}

#[test]
fn entries_parse_with_defaults_comments_and_separators() {
    let text = format!(
        "airlock/testbox:dev@{a}, busybox\n# a comment\n{b} # trailing\n\nregistry.local:5000/x/y:1",
        a = id('a'),
        b = id('b')
    );
    let entries = AllowList::parse_entries(&text).unwrap();
    let shown: Vec<String> = entries.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            format!("airlock/testbox:dev@{}", id('a')),
            "busybox:latest".to_owned(),
            id('b'),
            "registry.local:5000/x/y:1".to_owned(),
        ]
    );
    assert!(AllowList::parse_entries("").unwrap().is_empty());
}

#[test]
fn bad_entries_are_refused() {
    for bad in [
        "UPPER:case",
        "name@sha256:abc",
        "sha256:xyz",
        "a b",
        "name:",
        "name@md5:00",
    ] {
        assert!(AllowList::parse_entries(bad).is_err(), "{bad}");
    }
}

#[test]
fn pinned_entries_admit_their_tag_id_and_digest_reference() {
    let allow = list(&format!("airlock/testbox:dev@{}", id('a')), true);
    let pinned = Some(id('a'));
    for image in [
        "airlock/testbox:dev".to_owned(),
        id('a'),
        format!("airlock/testbox@{}", id('a')),
        format!("airlock/testbox:dev@{}", id('a')),
    ] {
        let admission = allow.admit(&image, nothing_recorded).unwrap();
        assert_eq!(admission.pinned, pinned, "{image}");
    }
}

#[test]
fn anything_else_is_not_allowed() {
    let allow = list(&format!("airlock/testbox:dev@{}", id('a')), true);
    for image in [
        "airlock/testbox".to_owned(), // means :latest
        "airlock/testbox:other".to_owned(),
        "busybox:dev".to_owned(),
        id('b'),
        format!("airlock/testbox@{}", id('b')),
        format!("airlock/testbox:other@{}", id('a')),
    ] {
        assert_eq!(
            allow.admit(&image, nothing_recorded),
            Err(ImageRefusal::NotAllowed {
                image: image.clone()
            }),
            "{image}"
        );
    }
}

#[test]
fn a_tag_is_pinned_by_an_import_or_refused_when_pinning_is_required() {
    let allow = list("airlock/testbox:dev", true);
    let refused = allow.admit("airlock/testbox:dev", nothing_recorded);
    assert_eq!(
        refused,
        Err(ImageRefusal::Unpinned {
            image: "airlock/testbox:dev".to_owned(),
            entry: "airlock/testbox:dev".to_owned(),
        })
    );
    let recorded = |name: &str| (name == "airlock/testbox:dev").then(|| id('c'));
    let admission = allow.admit("airlock/testbox:dev", recorded).unwrap();
    assert_eq!(admission.pinned, Some(id('c')));
    assert_eq!(admission.entry, "airlock/testbox:dev");
    // The recorded id also admits the image by id.
    assert!(allow.admit(&id('c'), recorded).is_ok());
}

#[test]
fn unpinned_tags_pass_when_pinning_is_off() {
    let allow = list("busybox", false);
    let admission = allow.admit("busybox", nothing_recorded).unwrap();
    assert_eq!(admission.pinned, None);
    assert_eq!(admission.entry, "busybox:latest");
    assert!(allow.admit("busybox:latest", nothing_recorded).is_ok());
    assert!(allow.admit("alpine", nothing_recorded).is_err());
}

#[test]
fn refusals_read_clearly() {
    let text = ImageRefusal::Unpinned {
        image: "x:1".to_owned(),
        entry: "x:1".to_owned(),
    }
    .to_string();
    expect_test::expect![[r#"image `x:1` is an unpinned tag and AIRLOCK_REQUIRE_PINNED is on: list it as `x:1@sha256:<id>` or import it with `airlock images load` to record its digest"#]].assert_eq(&text);
}
