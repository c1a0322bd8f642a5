//! The language of human-readable messages (SPEC §3): English by default,
//! Simplified Chinese when the `locale` setting says `zh-CN`. Codes, types
//! and field names never change with it.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Locale {
    #[default]
    En,
    ZhCn,
}

impl Locale {
    /// `zh-CN` (any case, `_` or `-`) is Chinese; anything else English.
    pub fn parse(setting: &str) -> Locale {
        if setting.replace('_', "-").eq_ignore_ascii_case("zh-cn") {
            Locale::ZhCn
        } else {
            Locale::En
        }
    }

    /// The message in this locale.
    pub fn pick<'a>(self, en: &'a str, zh: &'a str) -> &'a str {
        match self {
            Locale::En => en,
            Locale::ZhCn => zh,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_setting() {
        assert_eq!(Locale::parse("zh-CN"), Locale::ZhCn);
        assert_eq!(Locale::parse("zh_cn"), Locale::ZhCn);
        assert_eq!(Locale::parse("en"), Locale::En);
        assert_eq!(Locale::parse(""), Locale::En);
        assert_eq!(Locale::ZhCn.pick("a", "b"), "b");
    }
}
