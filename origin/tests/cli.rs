//! The `origin` binary's help: every flag that has a default shows it, and the default
//! shown is the one the origin really uses.

#![forbid(unsafe_code)]

use std::process::Command;

use clap::Parser;
use origin::config::{Config, Settings};

/// Flags of `origin serve` that have no default: unset means "none" or "off".
const NO_DEFAULT: &[&str] = &[
    "--config",
    "--coworker",
    "--coworker-file",
    "--self-api",
    "--admin-token-file",
    "--advertise-rtmp",
    "--advertise-http",
    "--pod-name",
    "--on-connect",
    "--on-publish",
    "--on-unpublish",
    "--on-play",
    "--on-stop",
    "--on-close",
    "--auth-file",
    "--help",
];

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_origin"))
        .args(args)
        .env_clear()
        .output()
        .expect("run origin");
    assert!(out.status.success(), "{args:?}");
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// Each long flag of a help text with its help, up to the next flag.
fn flags(help: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        let flag = t
            .strip_prefix("-h, ")
            .or_else(|| t.strip_prefix("-V, "))
            .unwrap_or(t);
        if indent <= 6 && flag.starts_with("--") {
            // Short help puts the text on the flag's line, long help below it.
            let (name, rest) = flag.split_once([' ', '=']).unwrap_or((flag, ""));
            out.push((name.to_string(), format!("{rest} ")));
        } else if let Some((_, text)) = out.last_mut() {
            text.push_str(t);
            text.push(' ');
        }
    }
    out
}

fn default_of(text: &str) -> Option<&str> {
    let start = text.find("[default: ")? + "[default: ".len();
    let end = text[start..].find(']')?;
    Some(&text[start..start + end])
}

#[derive(Parser)]
struct Serve {
    #[command(flatten)]
    settings: Settings,
}

#[test]
fn serve_help_shows_every_default_and_it_is_the_real_one() {
    let help = help(&["serve", "--help"]);
    let flags = flags(&help);
    assert!(flags.len() > 30, "flags parsed from the help:\n{help}");
    for needed in ["--republish-timeout", "--wait-for-publisher", "--route"] {
        assert!(
            flags.iter().any(|(f, _)| f == needed),
            "{needed} in\n{help}"
        );
    }
    let reference = format!("{:?}", Config::default());
    for (flag, text) in &flags {
        if NO_DEFAULT.contains(&flag.as_str()) {
            assert!(default_of(text).is_none(), "{flag} shows a default: {text}");
            continue;
        }
        let Some(value) = default_of(text) else {
            panic!("`origin serve --help` shows no default for {flag}: {text}");
        };
        // Giving the shown default explicitly must change nothing.
        let given = Serve::try_parse_from(["serve", flag.as_str(), value])
            .unwrap_or_else(|e| panic!("{flag} {value}: {e}"))
            .settings;
        assert_eq!(
            format!("{:?}", Config::from_settings(given, None)),
            reference,
            "{flag}: the default shown ({value}) is not the one used"
        );
    }
}

#[test]
fn cluster_and_drain_help_show_their_defaults() {
    for (cmd, expected) in [
        (
            "cluster",
            &[
                ("--replicas", "3"),
                ("--layout", "addresses"),
                ("--first-host", "127.0.1.1"),
                ("--rtmp-base", "1935"),
                ("--api-base", "1985"),
                ("--flv-base", "8080"),
                ("--host", "127.0.0.1"),
                ("--log-format", "text"),
            ][..],
        ),
        (
            "drain",
            &[("--api", "127.0.0.1:1985"), ("--drain-grace", "60s")][..],
        ),
    ] {
        let help = help(&[cmd, "--help"]);
        let flags = flags(&help);
        for (flag, default) in expected {
            let text = &flags
                .iter()
                .find(|(f, _)| f == flag)
                .unwrap_or_else(|| panic!("{flag} not in `origin {cmd} --help`:\n{help}"))
                .1;
            assert_eq!(default_of(text), Some(*default), "{cmd} {flag}: {text}");
        }
    }
}
