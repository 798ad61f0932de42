//! Shell completions and man pages, generated from the clap structs themselves so they never
//! drift from the flags (`gitdb completions`, `gitdb man`). They need no repository.

use std::io::Write;
use std::path::Path;

use super::error::{CliError, Result};

/// Writes `shell`'s completion script for the program `name` whose flags are `cmd` to `out`.
pub fn completions(
    shell: clap_complete::Shell,
    mut cmd: clap::Command,
    name: &str,
    out: &mut dyn Write,
) -> Result<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    out.write_all(&script)?;
    Ok(0)
}

/// Writes the man pages of each `(flags, program name)` into `dir` (created if absent): one
/// `<name>.1` per program and one `<name>-<sub>.1` per subcommand, at every depth.
pub fn man_pages(programs: Vec<(clap::Command, &str)>, dir: &Path) -> Result<u8> {
    std::fs::create_dir_all(dir).map_err(CliError::io(dir.display()))?;
    for (cmd, name) in programs {
        write_man_pages(cmd, name, dir).map_err(CliError::io(format!(
            "writing man pages into {}",
            dir.display()
        )))?;
    }
    Ok(0)
}

fn write_man_pages(cmd: clap::Command, name: &str, dir: &Path) -> std::io::Result<()> {
    let cmd = cmd.name(name.to_owned());
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(dir.join(format!("{name}.1")), page)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let sub_name = format!("{name}-{}", sub.get_name());
        write_man_pages(sub.clone(), &sub_name, dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog() -> clap::Command {
        clap::Command::new("x")
            .about("a program")
            .subcommand(clap::Command::new("get").about("gets"))
            .subcommand(clap::Command::new("dir").subcommand(clap::Command::new("ls")))
    }

    #[test]
    fn one_man_page_per_program_and_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("man/man1");
        assert_eq!(man_pages(vec![(prog(), "prog")], &out).unwrap(), 0);
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["prog-dir-ls.1", "prog-dir.1", "prog-get.1", "prog.1"]
        );
        let page = std::fs::read_to_string(out.join("prog-get.1")).unwrap();
        assert!(page.contains("gets"), "{page}");
    }

    #[test]
    fn a_man_directory_that_cannot_be_made_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let err = man_pages(vec![(prog(), "prog")], &file.join("sub")).unwrap_err();
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn completions_name_the_subcommands() {
        let mut out = Vec::new();
        completions(clap_complete::Shell::Bash, prog(), "prog", &mut out).unwrap();
        let script = String::from_utf8(out).unwrap();
        assert!(
            script.contains("_prog()") && script.contains("get"),
            "{script}"
        );
    }
}
