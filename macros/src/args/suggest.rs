//! Suggestions for misspelt arguments: the words people write for a key (`name` for `group`),
//! and the closest key or value by edit distance.

use super::parse::KEYS;

/// Words people write for one of the keys, and the key they mean.
const ALIASES: &[(&str, &str)] = &[
    ("name", "group"),
    ("pool", "group"),
    ("comm", "group"),
    ("group_name", "group"),
    ("enabled", "disabled"),
    ("enable", "disabled"),
    ("skip", "disabled"),
    ("mode", "capture"),
    ("graph", "capture"),
    ("krate", "crate"),
    ("symmem", "crate"),
    ("path", "crate"),
];

/// Why `name` is not an argument key, with the key it was probably meant to be.
pub(crate) fn unknown_key_message(name: &str) -> String {
    let list = "`group`, `disabled`, `capture`, `crate`";
    if let Some((_, key)) = ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(name))
    {
        let extra = if *key == "disabled" && name.to_ascii_lowercase().starts_with("enable") {
            " (with the negated condition: `disabled = !condition`)"
        } else {
            ""
        };
        return format!(
            "unknown argument `{name}`: did you mean `{key}`?{extra} (arguments: {list})"
        );
    }
    match did_you_mean(name, KEYS) {
        Some(key) => {
            format!("unknown argument `{name}`: did you mean `{key}`? (arguments: {list})")
        }
        None => format!("unknown argument `{name}`: expected one of {list}"),
    }
}

/// The closest candidate to `word` by edit distance (case-insensitive), if close enough.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&lower, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("grup", KEYS), Some("group"));
        assert_eq!(did_you_mean("Group", KEYS), Some("group"));
        assert_eq!(did_you_mean("disable", KEYS), Some("disabled"));
        assert_eq!(did_you_mean("captrue", KEYS), Some("capture"));
        assert_eq!(did_you_mean("zzzzzz", KEYS), None);
        assert!(unknown_key_message("enabled").contains("disabled = !condition"));
        assert!(unknown_key_message("name").contains("did you mean `group`"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
