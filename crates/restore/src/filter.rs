//! Namespace filters in the manner of mongorestore's `--nsInclude` and
//! `--nsExclude`: patterns of `db.collection` where `*` matches any run of
//! characters (dots included) and `\` makes the next character literal.
//! With no include pattern everything is included; an exclude pattern
//! wins over an include pattern.

/// A set of include and exclude patterns.
#[derive(Debug, Clone, Default)]
pub(crate) struct NsFilter {
    include: Vec<Vec<Token>>,
    exclude: Vec<Vec<Token>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Char(char),
    Star,
}

impl NsFilter {
    pub(crate) fn new(include: &[String], exclude: &[String]) -> Self {
        NsFilter {
            include: include.iter().map(|p| parse(p)).collect(),
            exclude: exclude.iter().map(|p| parse(p)).collect(),
        }
    }

    /// Whether `namespace` (`db.collection`) is restored.
    pub(crate) fn allows(&self, namespace: &str) -> bool {
        let chars: Vec<char> = namespace.chars().collect();
        let included = self.include.is_empty() || self.include.iter().any(|p| matches(p, &chars));
        included && !self.exclude.iter().any(|p| matches(p, &chars))
    }

    /// Whether a command on a whole database (`dropDatabase`) may run:
    /// the database is included as a whole and no exclude pattern can
    /// reach into it.
    pub(crate) fn allows_db(&self, db: &str) -> bool {
        if !self.allows(&format!("{db}.*")) {
            return false;
        }
        !self.exclude.iter().any(|pattern| {
            let head: Vec<&Token> = pattern
                .iter()
                .take_while(|t| **t != Token::Char('.'))
                .collect();
            head.contains(&&Token::Star)
                || head
                    .iter()
                    .map(|t| match t {
                        Token::Char(c) => *c,
                        Token::Star => '*',
                    })
                    .eq(db.chars())
        })
    }
}

fn parse(pattern: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    out.push(Token::Char(next));
                }
            }
            '*' => {
                if out.last() != Some(&Token::Star) {
                    out.push(Token::Star);
                }
            }
            other => out.push(Token::Char(other)),
        }
    }
    out
}

/// Glob matching with backtracking on the last star (linear in practice).
fn matches(pattern: &[Token], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(Token::Char(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            Some(Token::Star) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|token| *token == Token::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: &[&str], exclude: &[&str]) -> NsFilter {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        NsFilter::new(&owned(include), &owned(exclude))
    }

    #[test]
    fn wildcards() {
        let f = filter(&["shop.*"], &[]);
        assert!(f.allows("shop.items"));
        assert!(f.allows("shop.café.menü"));
        assert!(!f.allows("crm.contacts"));
        assert!(!f.allows("shopping.items"));

        let f = filter(&["*.items", "crm.c*s"], &[]);
        assert!(f.allows("shop.items"));
        assert!(f.allows("crm.contacts"));
        assert!(!f.allows("crm.contact"));

        assert!(filter(&[], &[]).allows("anything.at.all"));
        assert!(filter(&["*"], &[]).allows("a.b"));
        assert!(filter(&["a.b"], &[]).allows("a.b"));
        assert!(!filter(&["a.b"], &[]).allows("a.bc"));
    }

    #[test]
    fn exclude_wins() {
        let f = filter(&["shop.*"], &["shop.big", "*.capped"]);
        assert!(f.allows("shop.items"));
        assert!(!f.allows("shop.big"));
        assert!(!f.allows("shop.capped"));
        let f = filter(&[], &["admin.*"]);
        assert!(!f.allows("admin.system.users"));
        assert!(f.allows("shop.items"));
    }

    #[test]
    fn whole_databases() {
        assert!(filter(&[], &[]).allows_db("shop"));
        assert!(filter(&["shop.*"], &[]).allows_db("shop"));
        assert!(!filter(&["shop.items"], &[]).allows_db("shop"));
        assert!(!filter(&[], &["shop.big"]).allows_db("shop"));
        assert!(filter(&[], &["crm.x"]).allows_db("shop"));
        assert!(!filter(&[], &["*.big"]).allows_db("shop"));
    }

    #[test]
    fn escapes() {
        let f = filter(&[r"db.a\*b"], &[]);
        assert!(f.allows("db.a*b"));
        assert!(!f.allows("db.axxb"));
    }
}
