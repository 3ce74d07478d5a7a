//! The rewrite against archives built by the `tar` crate and by hand, fed in odd-sized
//! chunks, read back with the `tar` crate.

use super::read::{Event, Reader};
use super::*;

const OWNER: Owner = Owner {
    uid: 1000,
    gid: 1001,
};
const LIMITS: Limits = Limits {
    max_bytes: 1 << 30,
    max_entries: 100_000,
};

/// A raw header block for `name` of `typeflag` and `size`, checksummed.
fn raw(name: &[u8], typeflag: u8, size: u64, mode: u32, link: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    {
        let bytes = header.as_old_mut();
        bytes.name[..name.len()].copy_from_slice(name);
        bytes.linkname[..link.len()].copy_from_slice(link);
    }
    header.set_size(size);
    header.set_mode(mode);
    header.set_entry_type(tar::EntryType::new(typeflag));
    header.set_cksum();
    header.as_bytes().to_vec()
}

fn with_content(mut archive: Vec<u8>, content: &[u8]) -> Vec<u8> {
    archive.extend_from_slice(content);
    archive.resize(
        archive.len() + usize::try_from(padding(content.len() as u64)).unwrap(),
        0,
    );
    archive
}

fn rewrite_with(
    input: &[u8],
    limits: Limits,
    chunk: usize,
) -> Result<(Vec<u8>, Summary), TarError> {
    let mut rewriter = Rewriter::new(OWNER, limits);
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        rewriter.push(piece, &mut out)?;
    }
    let summary = rewriter.finish(&mut out)?;
    Ok((out, summary))
}

fn rewrite(input: &[u8]) -> Result<Vec<u8>, TarError> {
    // The same answer whatever the chunking.
    let whole = rewrite_with(input, LIMITS, input.len().max(1));
    for chunk in [1, 7, 511, 513] {
        assert_eq!(rewrite_with(input, LIMITS, chunk), whole, "chunk {chunk}");
    }
    whole.map(|(out, _)| out)
}

/// (name, type, mode, uid, gid, link, content) of each entry, read by the `tar` crate.
/// One entry read back: (name, type, mode, uid, gid, link, content).
type Row = (String, char, u32, u64, u64, String, Vec<u8>);

fn entries(archive: &[u8]) -> Vec<Row> {
    let mut reader = tar::Archive::new(archive);
    reader
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
            let link = entry
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            (
                entry
                    .path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_owned(),
                header.entry_type().as_byte() as char,
                header.mode().unwrap(),
                header.uid().unwrap(),
                header.gid().unwrap(),
                link,
                content,
            )
        })
        .collect()
}

fn builder_archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    build(&mut builder);
    builder.into_inner().unwrap()
}

fn file(builder: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32, content: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, name, content).unwrap();
}

fn reason(error: TarError) -> (Option<String>, String) {
    match error {
        TarError::Bad { entry, reason } => (entry, reason),
        TarError::TooLarge(what) => (None, format!("too large: {what}")),
    }
}

#[test]
fn files_dirs_and_symlinks_pass_reowned_without_special_bits() {
    let archive = builder_archive(|b| {
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o1777);
        dir.set_size(0);
        b.append_data(&mut dir, "src/", &[][..]).unwrap();
        file(b, "src/main.rs", 0o4755, b"fn main() {}\n");
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        b.append_link(&mut link, "latest", "src/main.rs").unwrap();
    });
    let out = entries(&rewrite(&archive).unwrap());
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].0, "src");
    assert_eq!(
        (out[0].1, out[0].2, out[0].3, out[0].4),
        ('5', 0o777, 1000, 1001)
    );
    assert_eq!((out[1].0.as_str(), out[1].2), ("src/main.rs", 0o755));
    assert_eq!(out[1].6, b"fn main() {}\n");
    assert_eq!((out[2].1, out[2].5.as_str()), ('2', "src/main.rs"));
}

#[test]
fn long_names_round_trip_through_gnu_records() {
    let long = format!("{}/{}", "d".repeat(150), "f".repeat(120));
    let target = "t".repeat(300);
    let archive = builder_archive(|b| {
        file(b, &long, 0o644, b"x");
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        b.append_link(&mut link, "l", &target).unwrap();
    });
    let out = entries(&rewrite(&archive).unwrap());
    assert_eq!(out[0].0, "d".repeat(150), "the parent comes first");
    assert_eq!(
        (out[1].0.as_str(), out[1].6.as_slice()),
        (long.as_str(), &b"x"[..])
    );
    assert_eq!(out[2].5, target);
}

#[test]
fn pax_paths_are_read() {
    let mut archive = Vec::new();
    let record = b"21 path=pax/name.txt\n";
    archive.extend(with_content(
        raw(b"PaxHeader", b'x', record.len() as u64, 0o644, b""),
        record,
    ));
    archive.extend(with_content(raw(b"short", b'0', 2, 0o644, b""), b"hi"));
    let out = entries(&rewrite(&archive).unwrap());
    assert_eq!(
        out.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["pax", "pax/name.txt"]
    );
}

#[test]
fn dangerous_names_are_refused_by_name() {
    for (name, why) in [
        (&b"../x"[..], "a `..` segment"),
        (b"a/../../x", "a `..` segment"),
        (b"/etc/x", "an absolute name"),
        (b"a\x01b", "a control character in the name"),
    ] {
        let archive = with_content(raw(name, b'0', 1, 0o644, b""), b"x");
        let (entry, reason) = super::tests::reason(rewrite(&archive).unwrap_err());
        assert_eq!(entry.as_deref().map(str::as_bytes), Some(name));
        assert_eq!(reason, why);
    }
    let long = "a/".repeat(2100);
    let archive = builder_archive(|b| file(b, &long, 0o644, b"x"));
    let (_, why) = reason(rewrite(&archive).unwrap_err());
    assert_eq!(why, "a name over 4096 bytes");
    let record = b"17 path=a\0b/../x\n";
    let mut archive = with_content(raw(b"P", b'x', record.len() as u64, 0o644, b""), record);
    archive.extend(raw(b"x", b'0', 0, 0o644, b""));
    assert_eq!(
        reason(rewrite(&archive).unwrap_err()).1,
        "a NUL in the name"
    );
}

#[test]
fn special_entries_are_refused() {
    for (typeflag, why) in [
        (b'1', "hardlinks are not accepted"),
        (b'3', "device nodes are not accepted"),
        (b'4', "device nodes are not accepted"),
        (b'6', "FIFOs are not accepted"),
        (b'S', "entry type `S` is not accepted"),
    ] {
        let archive = raw(b"node", typeflag, 0, 0o644, b"/etc/passwd");
        let (entry, reason) = reason(rewrite(&archive).unwrap_err());
        assert_eq!((entry.as_deref(), reason.as_str()), (Some("node"), why));
    }
}

#[test]
fn nothing_goes_through_a_symlink_of_the_same_archive() {
    let mut archive = raw(b"escape", b'2', 0, 0o777, b"/etc");
    archive.extend(with_content(
        raw(b"escape/passwd", b'0', 1, 0o644, b""),
        b"x",
    ));
    let (entry, why) = reason(rewrite(&archive).unwrap_err());
    assert_eq!(entry.as_deref(), Some("escape/passwd"));
    assert_eq!(why, "its parent `escape` is a symlink of this archive");
    // Deeper, and with a `./` spelling.
    let mut archive = raw(b"./l", b'2', 0, 0o777, b"..");
    archive.extend(raw(b"l/a/b/", b'5', 0, 0o755, b""));
    assert!(rewrite(&archive).is_err());
    // A directory where the archive made a symlink.
    let mut archive = raw(b"l", b'2', 0, 0o777, b"/");
    archive.extend(raw(b"l/", b'5', 0, 0o755, b""));
    assert_eq!(
        reason(rewrite(&archive).unwrap_err()).1,
        "a directory over a symlink of this archive"
    );
    // A file over the symlink replaces it (Docker unlinks it first): allowed.
    let mut archive = raw(b"l", b'2', 0, 0o777, b"/etc");
    archive.extend(with_content(raw(b"l", b'0', 1, 0o644, b""), b"x"));
    assert_eq!(entries(&rewrite(&archive).unwrap()).len(), 2);
}

#[test]
fn missing_parents_become_directories_and_the_root_entry_is_skipped() {
    let mut archive = raw(b"./", b'5', 0, 0o777, b"");
    archive.extend(with_content(raw(b"a/b/c.txt", b'0', 1, 0o644, b""), b"x"));
    archive.extend(with_content(raw(b"a/b/d.txt", b'0', 1, 0o644, b""), b"y"));
    let out = entries(&rewrite(&archive).unwrap());
    let names: Vec<_> = out.iter().map(|e| (e.0.as_str(), e.1)).collect();
    assert_eq!(
        names,
        [
            ("a", '5'),
            ("a/b", '5'),
            ("a/b/c.txt", '0'),
            ("a/b/d.txt", '0')
        ]
    );
}

#[test]
fn caps_are_typed() {
    let mut archive = Vec::new();
    for at in 0..11 {
        archive.extend(raw(format!("f{at}").as_bytes(), b'0', 0, 0o644, b""));
    }
    let small = Limits {
        max_bytes: 1 << 20,
        max_entries: 10,
    };
    let error = rewrite_with(&archive, small, 512).unwrap_err();
    assert_eq!(error, TarError::TooLarge("10 entries".to_owned()));
    let tiny = Limits {
        max_bytes: 1000,
        max_entries: 10,
    };
    let error = rewrite_with(&archive, tiny, 512).unwrap_err();
    assert_eq!(error, TarError::TooLarge("1000 bytes".to_owned()));
}

#[test]
fn malformed_archives_are_bad() {
    let mut header = raw(b"a", b'0', 10, 0o644, b"");
    header[0] = b'b';
    assert_eq!(
        reason(rewrite(&header).unwrap_err()).1,
        "a header with a bad checksum"
    );
    let truncated = with_content(raw(b"a", b'0', 1000, 0o644, b""), b"short");
    let error = rewrite_with(&truncated, LIMITS, 100).unwrap_err();
    assert_eq!(
        reason(error).1,
        "the archive ends in the middle of an entry"
    );
    assert_eq!(
        reason(rewrite(&[7u8; 300]).unwrap_err()).1,
        "the archive ends in the middle of an entry"
    );
}

#[test]
fn names_normalise() {
    assert_eq!(normalise(b"./a//b/./c/").unwrap().as_deref(), Some("a/b/c"));
    assert_eq!(normalise(b"./").unwrap(), None);
    assert!(normalise(b"a/..").is_err());
}

#[test]
fn the_reader_lists_and_extracts() {
    let archive = builder_archive(|b| {
        file(b, "dir/one.txt", 0o640, b"first");
        file(b, &format!("dir/{}", "n".repeat(200)), 0o644, &[9u8; 1500]);
    });
    let mut reader = Reader::default();
    let mut seen = Vec::new();
    let mut content = Vec::new();
    for piece in archive.chunks(100) {
        reader
            .push(piece, &mut |event| match event {
                Event::Entry(entry) => seen.push((entry.name, entry.mode, entry.size)),
                Event::Content(bytes) => content.extend_from_slice(bytes),
            })
            .unwrap();
    }
    assert_eq!(seen[0], ("dir/one.txt".to_owned(), 0o640, 5));
    assert_eq!(seen[1].0.len(), 204);
    assert_eq!(content.len(), 1505);
    assert_eq!(&content[..5], b"first");
}

#[test]
fn file_headers_carry_the_owner() {
    let mut archive = file_header("out.bin", 3, 17, OWNER);
    archive = with_content(archive, b"abc");
    archive.resize(archive.len() + 1024, 0);
    let out = entries(&archive);
    assert_eq!(out[0].0, "out.bin");
    assert_eq!(
        (out[0].3, out[0].4, out[0].6.as_slice()),
        (1000, 1001, &b"abc"[..])
    );
}
