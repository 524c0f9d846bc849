//! Downloads into kiln's cache with checksums, and safe archive extraction.
//!
//! Nothing is ever left half-written under its final name: downloads and extractions go to a
//! temporary name first and are renamed once complete and verified.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use md5::{Digest, Md5};
use sha2::Sha256;

use crate::{DataError, Result};

/// Environment variable that overrides where kiln caches downloaded and extracted datasets.
pub const CACHE_ENV: &str = "KILN_DATA";

/// The cache directory: `$KILN_DATA`, else the user's cache dir (`~/.cache/kiln` on Linux).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("kiln")
}

/// Environment variable naming the project's shared, read-only data directory (datasets,
/// pretrained weights and reference outputs; `.ci/run` points it at `../shared`).
pub const SHARED_ENV: &str = "KILN_SHARED";

/// The shared data directory: `$KILN_SHARED`, else `../shared` (beside the project).
pub fn shared_dir() -> PathBuf {
    std::env::var_os(SHARED_ENV)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared"))
}

/// The published checksum a download is verified against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// The full MD5, hex (as datasets such as CIFAR-10 publish it).
    Md5(&'static str),
    /// The leading hex digits of the SHA-256. PyTorch Hub and torchvision name weight files
    /// `<name>-<first 8 hex digits of the SHA-256>.pth` and verify only that prefix.
    Sha256Prefix(&'static str),
}

impl Checksum {
    /// The hash function's name, as error messages print it.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Checksum::Md5(_) => "MD5",
            Checksum::Sha256Prefix(_) => "SHA-256",
        }
    }

    /// Checks the file at `path` against this checksum (case-insensitive hex).
    ///
    /// A SHA-256 prefix must be at least 8 hex digits: a shorter one would accept almost
    /// any file, so it is rejected as [`DataError::Invalid`] before the file is read.
    pub fn verify(&self, path: &Path) -> Result<()> {
        let (expected, actual) = match *self {
            Checksum::Md5(expected) => (expected, md5_file(path)?),
            Checksum::Sha256Prefix(prefix) => {
                let is_hex = prefix.chars().all(|c| c.is_ascii_hexdigit());
                if prefix.len() < 8 || prefix.len() > 64 || !is_hex {
                    return Err(DataError::invalid(
                        "SHA-256 prefix",
                        format!("`{prefix}` must be 8 to 64 hex digits"),
                    ));
                }
                (prefix, sha256_file(path)?)
            }
        };
        let matches = match self {
            Checksum::Md5(_) => actual.eq_ignore_ascii_case(expected),
            Checksum::Sha256Prefix(_) => actual
                .get(..expected.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(expected)),
        };
        if !matches {
            return Err(DataError::Checksum {
                path: path.to_path_buf(),
                algorithm: self.algorithm(),
                expected: expected.to_ascii_lowercase(),
                actual,
            });
        }
        Ok(())
    }
}

/// A file that can be downloaded: where from, what to call it, and its published checksum.
#[derive(Clone, Copy, Debug)]
pub struct RemoteFile {
    /// Download URL.
    pub url: &'static str,
    /// File name in the cache.
    pub file_name: &'static str,
    /// Published checksum, verified after every download and on every cache hit.
    pub checksum: Checksum,
}

/// Lowercase hex digest of a file's contents under hasher `D`.
fn hex_digest<D: Digest>(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = D::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// Hex MD5 of a file's contents.
pub fn md5_file(path: &Path) -> Result<String> {
    hex_digest::<Md5>(path)
}

/// Hex SHA-256 of a file's contents.
pub fn sha256_file(path: &Path) -> Result<String> {
    hex_digest::<Sha256>(path)
}

/// Checks `path` against an expected MD5.
pub fn verify_md5(path: &Path, expected: &str) -> Result<()> {
    let actual = md5_file(path)?;
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(DataError::Checksum {
            path: path.to_path_buf(),
            algorithm: "MD5",
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Returns the cached copy of `remote` in `dir`, downloading it first when absent.
///
/// A cached file is re-verified against `remote.checksum`; a download is written to
/// `<name>.part`, verified, then renamed.
pub fn fetch(remote: &RemoteFile, dir: &Path) -> Result<PathBuf> {
    let dest = dir.join(remote.file_name);
    if dest.exists() {
        remote.checksum.verify(&dest)?;
        return Ok(dest);
    }
    fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let part = dir.join(format!("{}.part", remote.file_name));
    let download = || -> Result<()> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(std::time::Duration::from_secs(20)))
            .timeout_recv_response(Some(std::time::Duration::from_secs(60)))
            .build()
            .into();
        let response = agent
            .get(remote.url)
            .call()
            .map_err(|e| DataError::Download {
                url: remote.url.to_string(),
                reason: e.to_string(),
            })?;
        let total = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let bar = match total {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::no_length(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("static template"),
        );
        bar.set_message(format!("downloading {}", remote.file_name));
        let mut reader = bar.wrap_read(response.into_body().into_reader());
        let mut out = File::create(&part).map_err(|e| DataError::io(&part, e))?;
        io::copy(&mut reader, &mut out).map_err(|e| DataError::Download {
            url: remote.url.to_string(),
            reason: e.to_string(),
        })?;
        out.sync_all().map_err(|e| DataError::io(&part, e))?;
        bar.finish_and_clear();
        remote.checksum.verify(&part)
    };
    if let Err(e) = download() {
        let _ = fs::remove_file(&part);
        return Err(e);
    }
    fs::rename(&part, &dest).map_err(|e| DataError::io(&dest, e))?;
    Ok(dest)
}

/// The path an archive entry should be written to below `root`, or `None` when the entry is
/// absolute or climbs out with `..`.
fn safe_entry_path(root: &Path, entry: &Path) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for component in entry.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Extracts a `.tar.gz` (or plain `.tar`) archive into `dest`.
///
/// Entries that are absolute or contain `..`, and links, are refused before anything is
/// written. Extraction happens in a sibling temporary directory that is renamed to `dest` at the
/// end, so an interrupted extraction never looks complete. `dest` must not exist yet.
pub fn extract_archive(archive: &Path, dest: &Path) -> Result<()> {
    let open = || -> Result<tar::Archive<Box<dyn Read>>> {
        let file = File::open(archive).map_err(|e| DataError::io(archive, e))?;
        let gz = archive.extension().is_some_and(|e| e == "gz" || e == "tgz");
        let reader: Box<dyn Read> = if gz {
            Box::new(flate2::read::GzDecoder::new(io::BufReader::new(file)))
        } else {
            Box::new(io::BufReader::new(file))
        };
        Ok(tar::Archive::new(reader))
    };
    let corrupt = |e: io::Error| DataError::format(archive, format!("corrupt archive: {e}"));

    // First pass: validate every entry's path and type.
    let mut listing = open()?;
    for entry in listing.entries().map_err(corrupt)? {
        let entry = entry.map_err(corrupt)?;
        let path = entry.path().map_err(corrupt)?.into_owned();
        let kind = entry.header().entry_type();
        let unsafe_entry = safe_entry_path(Path::new(""), &path).is_none()
            || kind.is_symlink()
            || kind.is_hard_link();
        if unsafe_entry {
            return Err(DataError::UnsafeArchiveEntry {
                archive: archive.to_path_buf(),
                entry: path.display().to_string(),
            });
        }
    }

    let parent = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    let staging = parent.join(format!(
        ".{}.partial-{}",
        dest.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("extract"),
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&staging);
    remove_abandoned_staging(parent, dest);
    fs::create_dir_all(&staging).map_err(|e| DataError::io(&staging, e))?;
    let unpack = || -> Result<()> {
        let mut archive_reader = open()?;
        for entry in archive_reader.entries().map_err(corrupt)? {
            let mut entry = entry.map_err(corrupt)?;
            let path = entry.path().map_err(corrupt)?.into_owned();
            let target = safe_entry_path(&staging, &path).expect("validated in the first pass");
            if entry.header().entry_type().is_dir() {
                fs::create_dir_all(&target).map_err(|e| DataError::io(&target, e))?;
                continue;
            }
            if !entry.header().entry_type().is_file() {
                continue;
            }
            if let Some(dir) = target.parent() {
                fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
            }
            let mut out = File::create(&target).map_err(|e| DataError::io(&target, e))?;
            io::copy(&mut entry, &mut out).map_err(corrupt)?;
            out.flush().map_err(|e| DataError::io(&target, e))?;
        }
        Ok(())
    };
    if let Err(e) = unpack() {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    match fs::rename(&staging, dest) {
        Ok(()) => Ok(()),
        // Another process extracted the same archive first: its copy is as good.
        Err(_) if dest.is_dir() => {
            let _ = fs::remove_dir_all(&staging);
            Ok(())
        }
        Err(e) => Err(DataError::io(dest, e)),
    }
}

/// Removes the staging folders (`.<dest>.partial-<pid>`) of extractions whose process is gone
/// (killed mid-way). On Linux a live process keeps its folder; elsewhere folders younger than a
/// day are kept.
fn remove_abandoned_staging(parent: &Path, dest: &Path) {
    let Some(name) = dest.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let prefix = format!(".{name}.partial-");
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let alive = if cfg!(target_os = "linux") {
            Path::new("/proc").join(pid).exists()
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() < 24 * 3600)
        };
        if !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz_with(entries: &[(&str, &[u8])], path: &Path) {
        let file = File::create(path).unwrap();
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            // Write the raw name so that `..` survives (the builder's helpers refuse it).
            let bytes = name.as_bytes();
            header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap();
    }

    #[test]
    fn extracts_a_normal_archive() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar.gz");
        tar_gz_with(&[("x/one.txt", b"1"), ("x/sub/two.txt", b"22")], &archive);
        let dest = dir.path().join("out");
        extract_archive(&archive, &dest).unwrap();
        assert_eq!(fs::read(dest.join("x/sub/two.txt")).unwrap(), b"22");
    }

    #[test]
    fn staging_left_by_a_killed_extraction_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar.gz");
        tar_gz_with(&[("x/one.txt", b"1")], &archive);
        // A process id far above any live one on this machine.
        let abandoned = dir.path().join(".out.partial-4000000000");
        fs::create_dir_all(abandoned.join("x")).unwrap();
        fs::write(abandoned.join("x/half.txt"), b"h").unwrap();
        extract_archive(&archive, &dir.path().join("out")).unwrap();
        assert!(!abandoned.exists());
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}"); // a.tar.gz and out
    }

    #[test]
    fn refuses_path_traversal_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("evil.tar.gz");
        tar_gz_with(&[("ok.txt", b"fine"), ("../escaped.txt", b"bad")], &archive);
        let dest = dir.path().join("inner/out");
        let err = extract_archive(&archive, &dest).unwrap_err();
        assert!(matches!(err, DataError::UnsafeArchiveEntry { .. }), "{err}");
        assert!(err.to_string().contains("evil.tar.gz"));
        assert!(!dest.exists());
        assert!(!dir.path().join("inner/escaped.txt").exists());
        assert!(!dir.path().join("escaped.txt").exists());
    }

    #[test]
    fn truncated_archive_is_an_error_and_leaves_no_output() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar.gz");
        let payload = vec![7u8; 100_000];
        tar_gz_with(&[("big.bin", &payload)], &archive);
        let bytes = fs::read(&archive).unwrap();
        fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
        let dest = dir.path().join("out");
        let err = extract_archive(&archive, &dest).unwrap_err();
        assert!(err.to_string().contains("a.tar.gz"), "{err}");
        assert!(!dest.exists());
    }

    #[test]
    fn md5_checks_catch_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"hello").unwrap();
        verify_md5(&path, "5d41402abc4b2a76b9719d911017c592").unwrap();
        let err = verify_md5(&path, "00000000000000000000000000000000").unwrap_err();
        assert!(matches!(err, DataError::Checksum { .. }));
    }

    #[test]
    fn sha256_prefix_checks_catch_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights-2cf24dba.pth");
        fs::write(&path, b"hello").unwrap();
        // SHA-256("hello") = 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824.
        assert_eq!(
            sha256_file(&path).unwrap(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        Checksum::Sha256Prefix("2cf24dba").verify(&path).unwrap();
        Checksum::Sha256Prefix("2CF24DBA5FB0A30E")
            .verify(&path)
            .unwrap();
        Checksum::Md5("5d41402abc4b2a76b9719d911017c592")
            .verify(&path)
            .unwrap();

        let err = Checksum::Sha256Prefix("2cf24dbb")
            .verify(&path)
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, DataError::Checksum { .. }), "{err}");
        assert!(
            message.contains("SHA-256 is 2cf24dba5fb0")
                && message.contains("expected 2cf24dbb")
                && message.contains("weights-2cf24dba.pth"),
            "{message}"
        );
        fs::write(&path, b"hello!").unwrap();
        assert!(matches!(
            Checksum::Sha256Prefix("2cf24dba").verify(&path),
            Err(DataError::Checksum { .. })
        ));
        // A prefix too short (or not hex) would accept nearly any file: refused outright.
        for bad in ["", "2cf2", "2cf24dbz"] {
            let err = Checksum::Sha256Prefix(bad).verify(&path).unwrap_err();
            assert!(matches!(err, DataError::Invalid { .. }), "{bad}: {err}");
        }
        let err = Checksum::Md5("00000000000000000000000000000000")
            .verify(&path)
            .unwrap_err();
        assert!(err.to_string().contains("MD5 is "), "{err}");
    }

    #[test]
    fn cached_file_is_verified_by_sha256_prefix() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("w-2cf24dba.pth"), b"hello").unwrap();
        let remote = RemoteFile {
            url: "http://127.0.0.1:9/unused",
            file_name: "w-2cf24dba.pth",
            checksum: Checksum::Sha256Prefix("2cf24dba"),
        };
        assert_eq!(
            fetch(&remote, dir.path()).unwrap(),
            dir.path().join("w-2cf24dba.pth")
        );
        let corrupt = RemoteFile {
            checksum: Checksum::Sha256Prefix("00000000"),
            ..remote
        };
        let err = fetch(&corrupt, dir.path()).unwrap_err();
        assert!(matches!(err, DataError::Checksum { .. }), "{err}");
    }

    /// Serves `body` once over HTTP on a loopback port; returns the URL.
    fn serve_once(body: &'static [u8]) -> String {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/file.bin", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let mut stream = stream;
            let header = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(header.as_bytes()).unwrap();
            stream.write_all(body).unwrap();
        });
        url
    }

    #[test]
    fn downloads_are_verified_then_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let url: &'static str = Box::leak(serve_once(b"hello").into_boxed_str());
        let remote = RemoteFile {
            url,
            file_name: "f.bin",
            checksum: Checksum::Md5("5d41402abc4b2a76b9719d911017c592"),
        };
        let path = fetch(&remote, dir.path()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert!(!dir.path().join("f.bin.part").exists());

        let url: &'static str = Box::leak(serve_once(b"tampered").into_boxed_str());
        let bad = RemoteFile {
            url,
            file_name: "g.bin",
            checksum: Checksum::Md5("5d41402abc4b2a76b9719d911017c592"),
        };
        let err = fetch(&bad, dir.path()).unwrap_err();
        assert!(matches!(err, DataError::Checksum { .. }), "{err}");
        assert!(!dir.path().join("g.bin").exists() && !dir.path().join("g.bin.part").exists());
    }

    #[test]
    fn cached_file_is_verified_without_network() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f.bin"), b"hello").unwrap();
        let remote = RemoteFile {
            url: "http://127.0.0.1:9/unused",
            file_name: "f.bin",
            checksum: Checksum::Md5("5d41402abc4b2a76b9719d911017c592"),
        };
        assert_eq!(
            fetch(&remote, dir.path()).unwrap(),
            dir.path().join("f.bin")
        );
    }
}
