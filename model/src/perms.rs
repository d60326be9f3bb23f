//! The two small vocabularies every SMART scope is made of: the context
//! (`patient/`, `user/`, `system/`) and the permission letters `c r u d s`.

use std::fmt;

/// Whose data a resource scope reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Context {
    /// `patient/`: the patient in context of the launch.
    Patient,
    /// `user/`: whatever the authorising user may access.
    User,
    /// `system/`: a backend client's pre-configured policy.
    System,
}

impl Context {
    /// Every context, in the order reports list them.
    pub const ALL: [Context; 3] = [Context::Patient, Context::User, Context::System];

    /// The scope prefix without its slash.
    pub fn as_str(self) -> &'static str {
        match self {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        }
    }

    /// Parses the prefix (without slash); contexts are lower case in SMART.
    pub fn parse(s: &str) -> Option<Context> {
        match s {
            "patient" => Some(Context::Patient),
            "user" => Some(Context::User),
            "system" => Some(Context::System),
            _ => None,
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of SMART v2 permission letters, kept in `cruds` order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Perms(u8);

impl Perms {
    pub const NONE: Perms = Perms(0);
    pub const C: Perms = Perms(1);
    pub const R: Perms = Perms(2);
    pub const U: Perms = Perms(4);
    pub const D: Perms = Perms(8);
    pub const S: Perms = Perms(16);
    /// v1 `read`.
    pub const READ: Perms = Perms(2 | 16);
    /// v1 `write`.
    pub const WRITE: Perms = Perms(1 | 4 | 8);
    /// v1 `*`, v2 `cruds`.
    pub const ALL: Perms = Perms(31);

    /// The letters in canonical order, each with its bit.
    pub const LETTERS: [(char, Perms); 5] = [
        ('c', Perms::C),
        ('r', Perms::R),
        ('u', Perms::U),
        ('d', Perms::D),
        ('s', Perms::S),
    ];

    /// The bit for one letter, if it is one of `cruds`.
    pub fn from_letter(c: char) -> Option<Perms> {
        Perms::LETTERS
            .iter()
            .find(|(l, _)| *l == c)
            .map(|(_, p)| *p)
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn from_bits(bits: u8) -> Perms {
        Perms(bits & 31)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Perms) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Perms) -> Perms {
        Perms(self.0 | other.0)
    }

    pub fn intersection(self, other: Perms) -> Perms {
        Perms(self.0 & other.0)
    }

    pub fn difference(self, other: Perms) -> Perms {
        Perms(self.0 & !other.0)
    }

    /// Each single letter in this set, in `cruds` order.
    pub fn iter(self) -> impl Iterator<Item = Perms> {
        Perms::LETTERS
            .into_iter()
            .filter(move |(_, p)| self.contains(*p))
            .map(|(_, p)| p)
    }

    /// The letters as a string in `cruds` order, e.g. `rs`.
    pub fn letters(self) -> String {
        Perms::LETTERS
            .iter()
            .filter(|(_, p)| self.contains(*p))
            .map(|(l, _)| *l)
            .collect()
    }
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.letters())
    }
}

impl fmt::Debug for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Perms({})", self.letters())
    }
}

impl std::ops::BitOr for Perms {
    type Output = Perms;
    fn bitor(self, rhs: Perms) -> Perms {
        self.union(rhs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_render_in_cruds_order() {
        assert_eq!((Perms::S | Perms::R).letters(), "rs");
        assert_eq!(Perms::WRITE.letters(), "cud");
        assert_eq!(Perms::ALL.letters(), "cruds");
        assert_eq!(Perms::NONE.letters(), "");
        assert_eq!(
            Perms::READ.iter().collect::<Vec<_>>(),
            vec![Perms::R, Perms::S]
        );
    }
}
