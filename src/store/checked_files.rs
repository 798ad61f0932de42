//! The contents `git fsck` checks: `.gitmodules` and `.gitattributes` received from a peer.
//!
//! A tree entry of either name (in any spelling git singles out, see
//! [`super::names::checked_file`]) makes fsck read the blob it names. A bad one is an *error*
//! for plain `git fsck` and for every clone or fetch with `transfer.fsckObjects`, so a peer
//! that sent one would leave this repository refused by stock git from then on. gitdb's own
//! writer never spells a key that way (it escapes such names), so these entries only come from
//! trees stock git wrote — or from a hostile peer. The importer refuses what git calls an
//! error (measured with git 2.47: `gitmodulesName`, `gitmodulesPath`, `gitmodulesUrl`,
//! `gitmodulesUpdate`, `gitmodulesSymlink`, `gitmodulesBlob`, `gitmodulesLarge`,
//! `gitattributesBlob`, `gitattributesLineLength`, `gitattributesLarge`) and lets through what
//! git only warns of (a `.gitattributes` symlink).
//!
//! Where git's rule is a whole URL normaliser (`check_submodule_url` over curl URLs), the check
//! here is stricter, not a copy: a URL is accepted only in shapes that normaliser takes, so a
//! `.gitmodules` git would accept may, rarely, be refused (the peer then stays unmerged and is
//! backed off), but none that git refuses is accepted. A `.gitmodules` that gix's config parser
//! cannot read is refused for the same reason, though git only warns of one it cannot parse.

use super::names::CheckedFile;

/// The largest `.gitattributes` git reads (`ATTR_MAX_FILE_SIZE`): over it, `gitattributesLarge`.
pub const MAX_GITATTRIBUTES: u64 = 100 * 1024 * 1024;
/// A `.gitattributes` line this long or longer is `gitattributesLineLength`.
const MAX_ATTR_LINE: usize = 2048;
/// Past this, a `.gitmodules` is refused unread (git's own limit, `gitmodulesLarge`, is its
/// big-file threshold, 512 MiB; a real one is a few KiB).
pub const MAX_GITMODULES: u64 = 16 * 1024 * 1024;

/// Whether an entry of this checked name may have this kind at all: git wants a blob under
/// `.gitmodules` (`gitmodulesSymlink`, `gitmodulesBlob`) and a non-tree under `.gitattributes`
/// (a symlink there is only a warning).
pub fn check_kind(
    file: CheckedFile,
    is_tree: bool,
    is_link: bool,
    is_gitlink: bool,
) -> Result<(), String> {
    match file {
        CheckedFile::Gitmodules if is_link => Err("a .gitmodules that is a symlink".into()),
        CheckedFile::Gitmodules if is_tree || is_gitlink => {
            Err("a .gitmodules that is not a blob".into())
        }
        CheckedFile::Gitattributes if is_tree || is_gitlink => {
            Err("a .gitattributes that is not a blob".into())
        }
        _ => Ok(()),
    }
}

/// Checks the blob a checked name holds (`size` first, so a huge one is not read).
pub fn check_contents(
    file: CheckedFile,
    size: u64,
    data: impl FnOnce() -> Result<Vec<u8>, String>,
) -> Result<(), String> {
    match file {
        CheckedFile::Gitattributes => {
            if size > MAX_GITATTRIBUTES {
                return Err(format!(
                    "a .gitattributes of {size} bytes (git reads at most {MAX_GITATTRIBUTES})"
                ));
            }
            check_gitattributes(&data()?)
        }
        CheckedFile::Gitmodules => {
            if size > MAX_GITMODULES {
                return Err(format!("a .gitmodules of {size} bytes"));
            }
            check_gitmodules(&data()?)
        }
    }
}

fn check_gitattributes(data: &[u8]) -> Result<(), String> {
    match data
        .split(|b| *b == b'\n')
        .find(|line| line.len() >= MAX_ATTR_LINE)
    {
        Some(line) => Err(format!(
            "a .gitattributes line of {} bytes (git reads lines under {MAX_ATTR_LINE})",
            line.len()
        )),
        None => Ok(()),
    }
}

fn check_gitmodules(data: &[u8]) -> Result<(), String> {
    let file = gix::config::File::from_bytes_no_includes(
        data,
        gix::config::file::Metadata::api(),
        Default::default(),
    )
    .map_err(|e| format!("a .gitmodules that cannot be parsed: {e}"))?;
    let Some(sections) = file.sections_by_name("submodule") else {
        return Ok(());
    };
    for section in sections {
        let Some(name) = section.header().subsection_name() else {
            continue;
        };
        let name = String::from_utf8_lossy(name);
        if !submodule_name_ok(&name) {
            return Err(format!("a .gitmodules naming submodule {name:?}"));
        }
        for url in section.values("url") {
            let url = String::from_utf8_lossy(&url);
            if !submodule_url_ok(&url) {
                return Err(format!(
                    "a .gitmodules with submodule {name:?} at url {url:?}"
                ));
            }
        }
        for path in section.values("path") {
            if path.first() == Some(&b'-') {
                return Err(format!(
                    "a .gitmodules with submodule {name:?} at path {path:?}"
                ));
            }
        }
        for update in section.values("update") {
            if update.first() == Some(&b'!') {
                return Err(format!(
                    "a .gitmodules with submodule {name:?} updated by a command"
                ));
            }
        }
    }
    Ok(())
}

/// git's `check_submodule_name`: not empty, no `..` component (with `/` or `\` between).
fn submodule_name_ok(name: &str) -> bool {
    !name.is_empty() && !name.split(['/', '\\']).any(|c| c == "..")
}

/// Never true where git's `check_submodule_url` fails; false for some URLs git takes.
fn submodule_url_ok(url: &str) -> bool {
    if url.starts_with('-') {
        return false;
    }
    // Decoded, no control character (git refuses a newline, which a credential helper would
    // read as the end of a field).
    let Some(decoded) = percent_decode(url) else {
        return false;
    };
    if decoded.iter().any(|b| b.is_ascii_control()) {
        return false;
    }
    if url.starts_with("./") || url.starts_with("../") || url.starts_with("git://") {
        // Relative URLs may not climb out of their base into its host or scheme
        // (CVE-2020-11008's `../:x`, `../../x/`: git's count_leading_dotdots).
        let mut rest = url;
        let mut climbs = 0;
        loop {
            if let Some(r) = rest.strip_prefix("./") {
                rest = r;
            } else if let Some(r) = rest.strip_prefix("../") {
                rest = r;
                climbs += 1;
            } else {
                break;
            }
        }
        return !(climbs > 0 && (rest.starts_with(':') || rest.starts_with('/')) || rest == "..");
    }
    let curl = ["http::", "https::", "ftp::", "ftps::"]
        .iter()
        .find_map(|p| url.strip_prefix(p))
        .or_else(|| {
            ["http://", "https://", "ftp://", "ftps://"]
                .iter()
                .any(|p| url.starts_with(p))
                .then_some(url)
        });
    match curl {
        Some(curl) => curl_url_ok(curl),
        // ssh, scp-like and local paths: git does not check them further.
        None => true,
    }
}

/// A curl URL in a shape git's `url_normalize` accepts: a known scheme, `//`, an authority of
/// an optional user, a non-empty host of name characters (or a bracketed IPv6 literal) and an
/// optional port under 65536, then a path of printable characters.
fn curl_url_ok(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    if !["http", "https", "ftp", "ftps"].contains(&scheme) {
        return false;
    }
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let host_port = match authority.rsplit_once('@') {
        Some((user, hp)) => {
            if !user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:".contains(&b))
            {
                return false;
            }
            hp
        }
        None => authority,
    };
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return false;
        };
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        (addr, after.strip_prefix(':'))
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    let host_ok = !host.is_empty()
        && (host_port.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)));
    let port_ok = port.is_none_or(|p| {
        p.is_empty()
            || (p.len() <= 5
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| n < 65536))
    });
    host_ok && port_ok && path.bytes().all(|b| b.is_ascii_graphic())
}

/// `%XX` decoded; `None` for a `%` not followed by two hex digits.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules(body: &str) -> Result<(), String> {
        check_gitmodules(body.as_bytes())
    }

    #[test]
    fn gitmodules_git_refuses_are_refused() {
        for bad in [
            "[submodule \"../x\"]\n\tpath = a\n",
            "[submodule \"a/../../x\"]\n\tpath = a\n",
            "[submodule \"a\\\\..\"]\n\tpath = a\n",
            "[submodule \"a\"]\n\tpath = -a\n",
            "[submodule \"a\"]\n\turl = -u\n",
            "[submodule \"a\"]\n\turl = ../:x\n",
            "[submodule \"a\"]\n\turl = ../../x/y%0a\n",
            "[submodule \"a\"]\n\turl = https://ex%0a.com/x\n",
            "[submodule \"a\"]\n\turl = https://exa mple.com/\n",
            "[submodule \"a\"]\n\turl = https://:443/x\n",
            "[submodule \"a\"]\n\turl = http::x\n",
            "[submodule \"a\"]\n\turl = https://user@host:99999/\n",
            "[submodule \"a\"]\n\tupdate = !rm -rf /\n",
            "[[[garbage\n",
        ] {
            assert!(modules(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn ordinary_gitmodules_pass() {
        for good in [
            "",
            "[core]\n\tbare = false\n",
            "[submodule \"lib/foo\"]\n\tpath = lib/foo\n\turl = https://github.com/a/foo.git\n",
            "[submodule \"x\"]\n\tpath = x\n\turl = ../../x\n\tupdate = rebase\n",
            "[submodule \"y\"]\n\tpath = y\n\turl = git@github.com:a/y.git\n",
            "[submodule \"z\"]\n\turl = ssh://git@host:22/z\n",
            "[submodule \"v6\"]\n\turl = https://[::1]:8080/v6\n",
            "[submodule \"p\"]\n\turl = https://u%40x@host.example/p%20q\n",
        ] {
            assert_eq!(modules(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn gitattributes_lines_and_size() {
        assert!(check_gitattributes(b"*.txt text\n*.bin -diff\n").is_ok());
        let long = format!("{}\n", "a".repeat(MAX_ATTR_LINE));
        assert!(check_gitattributes(long.as_bytes()).is_err());
        let short = format!("{}\n", "a".repeat(MAX_ATTR_LINE - 1));
        assert!(check_gitattributes(short.as_bytes()).is_ok());
        assert!(
            check_contents(
                CheckedFile::Gitattributes,
                MAX_GITATTRIBUTES + 1,
                || panic!("read")
            )
            .is_err()
        );
    }

    #[test]
    fn kinds() {
        use CheckedFile::*;
        assert!(check_kind(Gitmodules, false, true, false).is_err());
        assert!(check_kind(Gitmodules, true, false, false).is_err());
        assert!(check_kind(Gitattributes, true, false, false).is_err());
        assert!(check_kind(Gitattributes, false, true, false).is_ok());
        assert!(check_kind(Gitmodules, false, false, false).is_ok());
    }
}

/// The verdicts above against stock git's own: a tree holding each `.gitmodules` is written
/// with the git CLI and `git fsck` run on it. Whatever git refuses must be refused here.
#[cfg(test)]
mod against_git {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn git(dir: &std::path::Path, args: &[&str], input: &[u8]) -> (bool, String) {
        let mut child = Command::new("git")
            .arg("--git-dir")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("git");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write");
        let out = child.wait_with_output().expect("git");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        )
    }

    /// Whether `git fsck` refuses a repository whose one commit holds `name` = `body`.
    fn git_refuses(name: &str, body: &[u8]) -> bool {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("r.git");
        assert!(
            git(
                &repo,
                &["init", "-q", "--bare", repo.to_str().unwrap()],
                b""
            )
            .0
        );
        let (_, blob) = git(&repo, &["hash-object", "-w", "--stdin"], body);
        let (_, tree) = git(
            &repo,
            &["mktree"],
            format!("100644 blob {blob}\t{name}\n").as_bytes(),
        );
        let (_, commit) = git(&repo, &["commit-tree", "-m", "t", &tree], b"");
        assert!(git(&repo, &["update-ref", "refs/heads/main", &commit], b"").0);
        !git(&repo, &["fsck", "--no-dangling"], b"").0
    }

    #[test]
    fn nothing_git_refuses_is_accepted() {
        let urls = [
            "https://github.com/a/foo.git",
            "../../x",
            "./x",
            "git@github.com:a/y.git",
            "ssh://git@host:22/z",
            "https://[::1]:8080/v6",
            "https://u%40x@host.example/p%20q",
            "-u",
            "../:x",
            "../../x/y%0a",
            "https://ex%0a.com/x",
            "https://exa mple.com/",
            "https://:443/x",
            "http::x",
            "https://user@host:99999/",
            "./../x",
            "git://a/%0ab",
            "https://[::1/",
            "https://a%zz/",
            "ssh://a b/",
            "x:y",
            "http::https://ok.example/x",
            "ftp://h/%",
            "https://h:/x",
            "https://h/x\ty",
            "../..",
            "../../",
            ".././/x",
            "https://h.example/a?b=c#d",
            "file:///tmp/x",
            "/srv/x.git",
            "https://h_x/",
        ];
        let mut bodies: Vec<String> = urls
            .iter()
            .map(|u| format!("[submodule \"a\"]\n\tpath = a\n\turl = {u}\n"))
            .collect();
        for name in ["../x", "a/../b", "a\\..\\b", "..", "a..b", ".x", "ok"] {
            bodies.push(format!("[submodule \"{name}\"]\n\tpath = a\n"));
        }
        for path in ["-a", "a-", "a"] {
            bodies.push(format!("[submodule \"a\"]\n\tpath = {path}\n"));
        }
        for update in ["!rm", "rebase", "merge", "none", "checkout"] {
            bodies.push(format!("[submodule \"a\"]\n\tupdate = {update}\n"));
        }
        bodies.push("[[[garbage\n".into());
        bodies.push("[submodule \"a\"]\n\turl\n".into());
        let (mut refused_by_git, mut stricter) = (0, Vec::new());
        for body in &bodies {
            let ours = check_gitmodules(body.as_bytes());
            if git_refuses(".gitmodules", body.as_bytes()) {
                refused_by_git += 1;
                assert!(ours.is_err(), "git refuses, gitdb accepts: {body:?}");
            } else if ours.is_err() {
                stricter.push(body);
            }
        }
        // The harness itself sees git refuse (the test could not fail otherwise).
        assert!(refused_by_git >= 10, "git refused only {refused_by_git}");
        eprintln!("refused here, accepted by git: {stricter:?}");
    }
}
