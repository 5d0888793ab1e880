//! The atomic "acknowledge and apply" commit every consumer ends a batch
//! with (`commit.lua`): each entry states its effects — a table write, an
//! output message, a dead letter, or an effect a stage defines in Lua — and
//! they happen once, with its XACK.

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
    /// JSON handed to the stage's own effects (`context` in the script).
    pub context: String,
    /// The script: [`CommitScript::standard`] or one with stage effects.
    pub script: &'static CommitScript,
}

/// `commit.lua`, possibly with effects of a stage's own.
#[derive(Debug)]
pub struct CommitScript(redis::Script);

impl CommitScript {
    /// The script with the standard effects only.
    pub fn standard() -> &'static CommitScript {
        static STANDARD: OnceLock<CommitScript> = OnceLock::new();
        STANDARD.get_or_init(|| CommitScript::with_effects(""))
    }

    /// The script with `stage_lua` added: it may define `effects.<kind> =
    /// function(code, value) ... end` using `context`, `reject` and
    /// [`VERSION_LUA`]'s `compare_versions` when prepended.
    pub fn with_effects(stage_lua: &str) -> CommitScript {
        let source = include_str!("commit.lua");
        assert_eq!(source.matches(STAGE_EFFECTS).count(), 1, "commit.lua marks once where stage effects go");
        CommitScript(redis::Script::new(&source.replace(STAGE_EFFECTS, stage_lua)))
    }
}

const STAGE_EFFECTS: &str = "-- STAGE EFFECTS";

/// The version rule (`compare_versions(new, old)`) for scripts.
pub const VERSION_LUA: &str = include_str!("version.lua");

/// How an entry writes its value under its code (the standard effects).
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
    /// Effects in the order they apply: a kind the script knows and its value.
    pub effects: Vec<(&'static str, String)>,
    /// Reason and (cut) payload of a rejection.
    pub rejection: Option<(Reason, String)>,
}

impl Effects {
    /// An accepted entry with no effect yet; add them with the builders.
    pub fn accepted(id: &str, code: &str) -> Self {
        Self { id: id.to_string(), code: code.to_string(), effects: Vec::new(), rejection: None }
    }

    /// A rejected entry: a dead letter keeping at most
    /// [`DeadLetter::MAX_PAYLOAD`] bytes of the input.
    pub fn rejected(id: &str, code: &str, reason: Reason, payload: &[u8]) -> Self {
        Self { rejection: Some((reason, DeadLetter::cut_payload(payload))), ..Self::accepted(id, code) }
    }

    /// A table write; put it before the output so that a refused insert stops the output.
    pub fn with_table(self, write: TableWrite) -> Self {
        match write {
            TableWrite::Insert(v) => self.with_effect("insert", v),
            TableWrite::Replace(v) => self.with_effect("replace", v),
        }
    }

    pub fn with_output(self, payload: String) -> Self {
        self.with_effect("output", payload)
    }

    /// An effect by kind: a standard one or one the target's script adds.
    pub fn with_effect(mut self, kind: &'static str, value: String) -> Self {
        self.effects.push((kind, value));
        self
    }

    /// Appends this entry's arguments to the script call, written straight
    /// into its buffer (no intermediate String per argument).
    fn encode(&self, target: &CommitTarget, invocation: &mut redis::ScriptInvocation<'_>) {
        for (kind, _) in &self.effects {
            assert!(
                !matches!(*kind, "insert" | "replace") || target.table.is_some(),
                "a table write needs CommitTarget::table"
            );
            assert!(*kind != "output" || target.output.is_some(), "an output needs CommitTarget::output");
        }
        invocation.arg(&self.id).arg(&self.code).arg(self.effects.len() + self.rejection.is_some() as usize);
        for (kind, value) in &self.effects {
            invocation.arg(*kind).arg(value);
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
    /// Entries an effect turned into dead letters (an insert whose code was
    /// taken becomes a `duplicate_code` one).
    pub stopped: u64,
    /// Entries an effect ignored (counted by the stage's script).
    pub ignored: u64,
}

/// Entries per script call: Redis runs a script atomically, so keep each short.
const CHUNK: usize = 2000;

/// Atomically acknowledges `entries` and applies their effects.
pub async fn commit(
    conn: &mut ConnectionManager,
    target: &CommitTarget,
    entries: &[Effects],
) -> Result<Committed, RedisError> {
    let mut total = Committed::default();
    for chunk in entries.chunks(CHUNK) {
        let mut invocation = target.script.0.prepare_invoke();
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
            .arg(PAYLOAD_FIELD)
            .arg(&target.context);
        for entry in chunk {
            entry.encode(target, &mut invocation);
        }
        let (applied, stopped, ignored): (u64, u64, u64) = invocation.invoke_async(conn).await?;
        total.applied += applied;
        total.stopped += stopped;
        total.ignored += ignored;
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
