//! Running the `ip`, `sysctl`, `kill` … commands the harness is built from.

use std::process::{Command, Output, Stdio};

/// Runs `argv` to completion and returns its stdout, or an error naming the command, its exit
/// status and its stderr.
pub(crate) fn run(argv: &[&str]) -> Result<String, String> {
    let output = output(argv)?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Runs `argv` to completion and returns whatever it did; fails only if it could not start.
pub(crate) fn output(argv: &[&str]) -> Result<Output, String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| "empty command line".to_owned())?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", argv.join(" ")))
}

/// The command line that runs `argv` inside network namespace `netns`.
pub(crate) fn in_netns<'a>(netns: &'a str, argv: &[&'a str]) -> Vec<&'a str> {
    let mut full = vec!["ip", "netns", "exec", netns];
    full.extend_from_slice(argv);
    full
}

/// Runs `ip -n NETNS ARGS…`.
pub(crate) fn ip(netns: &str, args: &[&str]) -> Result<String, String> {
    let mut full = vec!["ip", "-n", netns];
    full.extend_from_slice(args);
    run(&full)
}

/// Standard base64 with padding (the secret file's text).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `n` in base 36 (lower case), for short unique names.
pub(crate) fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut digits = Vec::new();
    loop {
        digits.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().map(|&d| char::from(d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn base36_digits() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        assert_eq!(base36(4_194_304), "2hwcg");
    }
}
