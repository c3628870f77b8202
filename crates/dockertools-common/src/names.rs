//! User and group names looked up by id in `passwd`- and `group`-format files,
//! the way GNU tar and Python's `pwd`/`grp` find them on a system with only files in NSS.
//! The tools' `main` loads `/etc/passwd` and `/etc/group`; libraries only receive the tables.

use std::collections::BTreeMap;
use std::path::Path;

/// Id-to-name tables.
#[derive(Clone, Debug, Default)]
pub struct Names {
    users: BTreeMap<u64, Vec<u8>>,
    groups: BTreeMap<u64, Vec<u8>>,
}

fn parse(text: &[u8]) -> BTreeMap<u64, Vec<u8>> {
    let mut map = BTreeMap::new();
    for line in text.split(|&b| b == b'\n') {
        let mut fields = line.split(|&b| b == b':');
        let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Some(id) = std::str::from_utf8(id)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        // The first line for an id wins, as getpwuid returns it.
        map.entry(id).or_insert_with(|| name.to_vec());
    }
    map
}

impl Names {
    /// Reads the tables from `passwd` and `group` files; a missing file gives an empty table.
    pub fn load(passwd: &Path, group: &Path) -> Names {
        Names {
            users: std::fs::read(passwd).map(|t| parse(&t)).unwrap_or_default(),
            groups: std::fs::read(group).map(|t| parse(&t)).unwrap_or_default(),
        }
    }

    /// The system tables (`/etc/passwd`, `/etc/group`).
    pub fn system() -> Names {
        Names::load(Path::new("/etc/passwd"), Path::new("/etc/group"))
    }

    /// Name of user `uid`, empty when unknown.
    pub fn user(&self, uid: u64) -> Vec<u8> {
        self.users.get(&uid).cloned().unwrap_or_default()
    }

    /// Name of group `gid`, empty when unknown.
    pub fn group(&self, gid: u64) -> Vec<u8> {
        self.groups.get(&gid).cloned().unwrap_or_default()
    }

    /// Id of user `name`, if known.
    pub fn uid_of(&self, name: &[u8]) -> Option<u64> {
        self.users
            .iter()
            .find(|(_, n)| n.as_slice() == name)
            .map(|(&id, _)| id)
    }

    /// Id of group `name`, if known.
    pub fn gid_of(&self, name: &[u8]) -> Option<u64> {
        self.groups
            .iter()
            .find(|(_, n)| n.as_slice() == name)
            .map(|(&id, _)| id)
    }
}
