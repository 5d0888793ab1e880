//! The atomic "acknowledge and apply" commit every consumer ends a batch
//! with (`commit.lua`): each entry states its effects — a table write, an
//! output message, a dead letter — and they happen once, with its XACK.

use std::sync::OnceLock;

use lab8_protocol::keys::PAYLOAD_FIELD;
use lab8_protocol::messages::{DeadLetter, Stage};
use lab8_protocol::Reason;
use redis::aio::ConnectionManager;
use redis::RedisError;

/// Where a consumer's commits go. Only what a stage writes is named: the
/// model has no table, the mart's prediction consumer no output.
#[derive(Debug, Clone)]
pub struct CommitTarget {
    /// The stream the entries were read from.
    pub stream: String,
    pub group: String,
    /// Written in the dead letters' `stage` field.
    pub stage: Stage,
    pub dead_letters: String,
    /// Hash reason → count of this stage's rejections.
    pub rejections: String,
    pub output: Option<String>,
    pub table: Option<String>,
}

/// How an entry writes its value under its code.
#[derive(Debug, Clone, PartialEq)]
pub enum TableWrite {
    /// Only when the code is new; otherwise the entry becomes a
    /// `duplicate_code` dead letter and its output is not sent.
    Insert(String),
    /// Whatever was there.
    Replace(String),
}

/// What one consumed entry turns into.
#[derive(Debug, Clone, PartialEq)]
pub struct Effects {
    pub id: String,
    pub code: String,
    pub table: Option<TableWrite>,
    pub output: Option<String>,
    /// Reason and (cut) payload of a rejection.
    pub rejection: Option<(Reason, String)>,
}

impl Effects {
    /// An accepted entry with no effect yet; add them with the builders.
    pub fn accepted(id: &str, code: &str) -> Self {
        Self { id: id.to_string(), code: code.to_string(), table: None, output: None, rejection: None }
    }

    /// A rejected entry: a dead letter keeping at most
    /// [`DeadLetter::MAX_PAYLOAD`] bytes of the input.
    pub fn rejected(id: &str, code: &str, reason: Reason, payload: &[u8]) -> Self {
        Self { rejection: Some((reason, DeadLetter::cut_payload(payload))), ..Self::accepted(id, code) }
    }

    pub fn with_table(mut self, write: TableWrite) -> Self {
        self.table = Some(write);
        self
    }

    pub fn with_output(mut self, payload: String) -> Self {
        self.output = Some(payload);
        self
    }

    /// Appends this entry's arguments to the script call, written straight
    /// into its buffer (no intermediate String per argument); the table write
    /// comes first so that a refused insert stops the output.
    fn encode(&self, target: &CommitTarget, invocation: &mut redis::ScriptInvocation<'_>) {
        assert!(self.table.is_none() || target.table.is_some(), "a table write needs CommitTarget::table");
        assert!(self.output.is_none() || target.output.is_some(), "an output needs CommitTarget::output");
        let count = self.table.is_some() as usize + self.output.is_some() as usize + self.rejection.is_some() as usize;
        invocation.arg(&self.id).arg(&self.code).arg(count);
        match &self.table {
            Some(TableWrite::Insert(v)) => invocation.arg("insert").arg(v),
            Some(TableWrite::Replace(v)) => invocation.arg("replace").arg(v),
            None => invocation,
        };
        if let Some(v) = &self.output {
            invocation.arg("output").arg(v);
        }
        if let Some((reason, payload)) = &self.rejection {
            invocation.arg("reject").arg(reason.wire_name()).arg(payload);
        }
    }
}

/// Counts of one commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// Entries acknowledged by this commit (others were already acknowledged).
    pub applied: u64,
    /// Inserts refused because the code was taken (now `duplicate_code` dead letters).
    pub duplicates: u64,
}

/// Entries per script call: Redis runs a script atomically, so keep each short.
const CHUNK: usize = 2000;

/// Atomically acknowledges `entries` and applies their effects.
pub async fn commit(
    conn: &mut ConnectionManager,
    target: &CommitTarget,
    entries: &[Effects],
) -> Result<Committed, RedisError> {
    static SCRIPT: OnceLock<redis::Script> = OnceLock::new();
    let script = SCRIPT.get_or_init(|| redis::Script::new(include_str!("commit.lua")));
    let mut total = Committed::default();
    for chunk in entries.chunks(CHUNK) {
        let mut invocation = script.prepare_invoke();
        invocation.key(&target.stream).key(&target.dead_letters).key(&target.rejections);
        for key in target.output.iter().chain(&target.table) {
            invocation.key(key);
        }
        invocation
            .arg(&target.group)
            .arg(target.stage.as_str())
            .arg(Reason::DuplicateCode.wire_name())
            .arg(target.output.is_some() as u8)
            .arg(target.table.is_some() as u8)
            .arg(PAYLOAD_FIELD);
        for entry in chunk {
            entry.encode(target, &mut invocation);
        }
        let (applied, duplicates): (u64, u64) = invocation.invoke_async(conn).await?;
        total.applied += applied;
        total.duplicates += duplicates;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_script_writes_the_dead_letter_fields() {
        let script = include_str!("commit.lua");
        for field in lab8_protocol::messages::DEAD_LETTER_FIELDS {
            assert!(script.contains(&format!("'{field}', ")), "{field}");
        }
    }
}
