//! The built-in preview masker, [`mask_preview`].

/// Characters of prompt text kept in a preview by default.
pub const DEFAULT_PREVIEW_CHARS: usize = 500;

/// A conservative mask for approval previews: every e-mail-like token
/// becomes `[EMAIL]`, every run of 4 or more digits (with spaces, dots or
/// dashes between them) `[NUMBER]`, every long token mixing letters and
/// digits or carrying a key prefix (`sk-`, `AKIA`, `ghp_`, `xox`) `[SECRET]`;
/// then the text is cut at `max_chars` characters (with `…`).
///
/// It errs toward masking too much: approvers see enough to judge, never the
/// sensitive values. Replace it with
/// [`ApprovalsBuilder::preview_masker`](super::ApprovalsBuilder::preview_masker)
/// (e.g. with the redaction engine).
///
/// ```
/// use skillgate::approval::mask_preview;
/// let m = mask_preview("mail bob@corp.example, card 4111 1111 1111 1111, key sk-ant-api03-abcDEF123456", 200);
/// assert_eq!(m, "mail [EMAIL], card [NUMBER], key [SECRET]");
/// assert_eq!(mask_preview("abcdef", 3), "abc…");
/// ```
pub fn mask_preview(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 2));
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        if rest.is_empty() {
            break;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let token = &rest[..end];
        rest = &rest[end..];
        // Keep surrounding punctuation, judge the core.
        let core_start = token
            .find(|c: char| c.is_alphanumeric() || c == '+')
            .unwrap_or(token.len());
        let core_end = token
            .rfind(|c: char| c.is_alphanumeric())
            .map(|i| i + token[i..].chars().next().map_or(1, char::len_utf8))
            .unwrap_or(core_start)
            .max(core_start);
        let (pre, core, post) = (
            &token[..core_start],
            &token[core_start..core_end],
            &token[core_end..],
        );
        out.push_str(pre);
        if looks_like_email(core) {
            out.push_str("[EMAIL]");
        } else if looks_like_secret(core) {
            out.push_str("[SECRET]");
        } else {
            out.push_str(core);
        }
        out.push_str(post);
    }
    let masked = mask_digit_runs(&out);
    truncate(&masked, max_chars)
}

fn looks_like_email(t: &str) -> bool {
    match t.split_once('@') {
        Some((local, domain)) => !local.is_empty() && domain.contains('.') && !domain.contains('@'),
        None => false,
    }
}

fn looks_like_secret(t: &str) -> bool {
    let lower = t.to_ascii_lowercase();
    if ["sk-", "akia", "ghp_", "gho_", "xox", "eyj", "-----begin"]
        .iter()
        .any(|p| lower.starts_with(p))
        && t.len() >= 12
    {
        return true;
    }
    let letters = t.chars().filter(|c| c.is_ascii_alphabetic()).count();
    let digits = t.chars().filter(|c| c.is_ascii_digit()).count();
    t.len() >= 20 && letters > 0 && digits > 0
}

/// Replaces runs of ≥ 4 digits (allowing single ` `, `-`, `.` between
/// digits, as in card and phone numbers) with `[NUMBER]`.
fn mask_digit_runs(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let mut j = i;
            let mut digits = 0;
            let mut last_digit_end = i;
            while j < chars.len() {
                if chars[j].is_ascii_digit() {
                    digits += 1;
                    j += 1;
                    last_digit_end = j;
                } else if matches!(chars[j], ' ' | '-' | '.' | '/')
                    && chars.get(j + 1).is_some_and(char::is_ascii_digit)
                {
                    j += 1;
                } else {
                    break;
                }
            }
            if digits >= 4 {
                out.push_str("[NUMBER]");
            } else {
                out.extend(&chars[i..last_digit_end]);
            }
            i = last_digit_end;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_plain_words() {
        assert_eq!(
            mask_preview("Prepare the customer export, 3 files.", 100),
            "Prepare the customer export, 3 files."
        );
        assert_eq!(
            mask_preview("call +1 555-123-4567 now", 100),
            "call +[NUMBER] now"
        );
    }

    proptest! {
        #[test]
        fn no_long_digit_run_survives(prefix in "[a-z ]{0,20}", n in 1000u64..u64::MAX, suffix in "[a-z ]{0,20}") {
            let m = mask_preview(&format!("{prefix}{n}{suffix}"), 1000);
            prop_assert!(!m.contains(&n.to_string()));
            let longest = m.split(|c: char| !c.is_ascii_digit()).map(str::len).max().unwrap_or(0);
            prop_assert!(longest < 4);
        }

        #[test]
        fn never_longer_than_asked(s in "\\PC{0,300}", max in 0usize..200) {
            prop_assert!(mask_preview(&s, max).chars().count() <= max + 1);
        }
    }
}
