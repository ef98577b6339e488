//! The data and the operations measured, shaped like a chat application.
//!
//! # Data
//!
//! Four tables: `users`, `conversations` (each owned by a user),
//! `participants` (three users per conversation) and `messages` (each in one
//! conversation, written by one of its participants, bodies of English-like
//! words). Every row is a pure function of the dataset's seed and the row's
//! id ([`DatasetSpec::user`], [`DatasetSpec::message`], …), so every backend
//! holds exactly the same data and tests can compute the expected answer of
//! any query without a database. The generator is a SplitMix64 hash of
//! (seed, table, id), fixed here rather than taken from a crate, so a dataset
//! stays the same across versions of this program.
//!
//! # Operations
//!
//! - **point read** ([`Op::PointRead`]): one message by primary key, ids
//!   uniform over the loaded messages.
//! - **range scan** ([`Op::RangeScan`]): 1,000 consecutive messages by
//!   primary key (`id >= ? ORDER BY id LIMIT 1000`), start uniform.
//! - **insert** ([`Op::Insert`]): one transaction inserting one message
//!   (BEGIN, INSERT … RETURNING id, COMMIT; foreign keys checked).
//! - **page load** ([`Op::PageLoad`]): the 16 queries of one conversation
//!   page, issued one after the other as an ORM would ([`page_load`]).
//! - **mixed**: readers doing point reads while one writer inserts, all at
//!   once; see [`mod@crate::run`].

use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::run::BenchError;

/// Rows returned by a range scan.
pub const RANGE_ROWS: u32 = 1000;
/// Messages shown on a conversation page.
pub const PAGE_MESSAGES: u32 = 10;
/// Conversations in a page's sidebar.
pub const SIDEBAR_CONVERSATIONS: u32 = 20;
/// Users taking part in each conversation.
pub const PARTICIPANTS: usize = 3;

/// A user row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Primary key, 1-based.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Avatar URL.
    pub avatar_url: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A conversation row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    /// Primary key, 1-based.
    pub id: i64,
    /// The user who started it.
    pub owner_id: i64,
    /// Title.
    pub title: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A conversation in a sidebar listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationSummary {
    /// Primary key.
    pub id: i64,
    /// Title.
    pub title: String,
}

/// A message row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Primary key, 1-based.
    pub id: i64,
    /// Its conversation.
    pub conversation_id: i64,
    /// Its author (a participant of the conversation).
    pub author_id: i64,
    /// Text.
    pub body: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A message to insert (the database assigns the id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// Its conversation.
    pub conversation_id: i64,
    /// Its author.
    pub author_id: i64,
    /// Text.
    pub body: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Everything one conversation page shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The signed-in user.
    pub viewer: User,
    /// The conversation.
    pub conversation: Conversation,
    /// Its participants' ids, ascending.
    pub participants: Vec<i64>,
    /// The latest messages, newest first, each with its author.
    pub messages: Vec<(Message, User)>,
    /// How many messages the conversation has.
    pub message_count: i64,
    /// The viewer's own conversations, newest first.
    pub sidebar: Vec<ConversationSummary>,
}

/// One worker's connection to a backend: the queries the workloads issue.
/// Implementations prepare each statement once per session.
#[async_trait]
pub trait Session: Send {
    /// `SELECT … FROM messages WHERE id = ?`
    async fn message(&mut self, id: i64) -> Result<Option<Message>, BenchError>;
    /// `SELECT … FROM messages WHERE id >= ? ORDER BY id LIMIT ?`
    async fn messages_from(
        &mut self,
        first_id: i64,
        limit: u32,
    ) -> Result<Vec<Message>, BenchError>;
    /// `SELECT … FROM users WHERE id = ?`
    async fn user(&mut self, id: i64) -> Result<Option<User>, BenchError>;
    /// `SELECT … FROM conversations WHERE id = ?`
    async fn conversation(&mut self, id: i64) -> Result<Option<Conversation>, BenchError>;
    /// `SELECT user_id FROM participants WHERE conversation_id = ? ORDER BY user_id`
    async fn participants(&mut self, conversation_id: i64) -> Result<Vec<i64>, BenchError>;
    /// `SELECT … FROM messages WHERE conversation_id = ? ORDER BY id DESC LIMIT ?`
    async fn recent_messages(
        &mut self,
        conversation_id: i64,
        limit: u32,
    ) -> Result<Vec<Message>, BenchError>;
    /// `SELECT count(*) FROM messages WHERE conversation_id = ?`
    async fn message_count(&mut self, conversation_id: i64) -> Result<i64, BenchError>;
    /// `SELECT id, title FROM conversations WHERE owner_id = ? ORDER BY id DESC LIMIT ?`
    async fn conversations_of(
        &mut self,
        owner_id: i64,
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, BenchError>;
    /// One transaction inserting one message; returns its id.
    async fn insert_message(&mut self, message: &NewMessage) -> Result<i64, BenchError>;
}

/// The shape and seed of a dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetSpec {
    /// `tiny`, `small`, `large` or a custom name (used in keys and schema
    /// names: letters, digits and `_` only).
    pub name: String,
    /// Rows of `users` (at least 3).
    pub users: u64,
    /// Rows of `conversations` (at least 1).
    pub conversations: u64,
    /// Rows of `messages` (at least [`RANGE_ROWS`]).
    pub messages: u64,
    /// Average message body in bytes (bodies are 0.5x to 1.5x this).
    pub avg_body_bytes: u64,
    /// Seed of every row.
    pub seed: u64,
}

const BASE_TIME: i64 = 1_700_000_000;

const WORDS: [&str; 64] = [
    "the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are",
    "as", "with", "his", "they", "at", "be", "this", "have", "from", "or", "one", "had", "by",
    "word", "but", "not", "what", "all", "were", "we", "when", "your", "can", "said", "there",
    "use", "an", "each", "which", "she", "do", "how", "their", "if", "will", "up", "other",
    "about", "out", "many", "then", "them", "these", "so", "some", "her", "would", "make", "like",
    "time",
];

/// SplitMix64's output function: a good 64-bit mix of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Table tags mixed into the row hash.
const T_USER: u64 = 1;
const T_CONV: u64 = 2;
const T_PART: u64 = 3;
const T_MSG: u64 = 4;
const T_NEW: u64 = 5;

impl DatasetSpec {
    /// For CI and tests: 100 users, 50 conversations, 2,000 messages
    /// (about 0.5 MB).
    pub fn tiny(seed: u64) -> DatasetSpec {
        DatasetSpec {
            name: "tiny".into(),
            users: 100,
            conversations: 50,
            messages: 2_000,
            avg_body_bytes: 160,
            seed,
        }
    }

    /// Fits in an 8 MiB page cache: 1,000 users, 500 conversations, 20,000
    /// messages (about 5 MB as SQLite).
    pub fn small(seed: u64) -> DatasetSpec {
        DatasetSpec {
            name: "small".into(),
            users: 1_000,
            conversations: 500,
            messages: 20_000,
            avg_body_bytes: 200,
            seed,
        }
    }

    /// More than ten times an 8 MiB page cache: 20,000 users, 10,000
    /// conversations, 400,000 messages (about 110 MB as SQLite).
    pub fn large(seed: u64) -> DatasetSpec {
        DatasetSpec {
            name: "large".into(),
            users: 20_000,
            conversations: 10_000,
            messages: 400_000,
            avg_body_bytes: 200,
            seed,
        }
    }

    /// Checks the shape: a clear message naming the field.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |what: String| Err(BenchError::InvalidOptions(what));
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return bad(format!(
                "dataset name {:?}: use letters, digits and '_' only (it names files and schemas)",
                self.name
            ));
        }
        if self.users < PARTICIPANTS as u64 {
            return bad(format!(
                "dataset {}: users = {}, need at least {PARTICIPANTS} (participants per conversation)",
                self.name, self.users
            ));
        }
        if self.conversations == 0 {
            return bad(format!(
                "dataset {}: conversations = 0, need at least 1",
                self.name
            ));
        }
        if self.messages < RANGE_ROWS as u64 {
            return bad(format!(
                "dataset {}: messages = {}, need at least {RANGE_ROWS} for the range scan",
                self.name, self.messages
            ));
        }
        Ok(())
    }

    fn h(&self, table: u64, id: i64, field: u64) -> u64 {
        mix(self.seed ^ mix((table << 56) ^ (field << 48) ^ id as u64))
    }

    fn below(&self, table: u64, id: i64, field: u64, n: u64) -> u64 {
        self.h(table, id, field) % n
    }

    fn text(&self, table: u64, id: i64, avg: u64) -> String {
        let len = (avg / 2 + self.below(table, id, 0xff, avg.max(1))) as usize;
        let mut s = String::with_capacity(len + 8);
        let mut k = 0u64;
        while s.len() < len {
            let w = WORDS[(self.h(table, id, 0x80 ^ (k & 0x7f)) ^ (k >> 7)) as usize % 64];
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(w);
            k += 1;
        }
        s
    }

    /// User `id` (1..=users).
    pub fn user(&self, id: i64) -> User {
        User {
            id,
            name: format!("User {id}"),
            email: format!("user{id}@example.com"),
            avatar_url: format!(
                "https://avatars.example.com/{:016x}.png",
                self.h(T_USER, id, 1)
            ),
            created_at: BASE_TIME + self.below(T_USER, id, 2, 86_400 * 365) as i64,
        }
    }

    /// The owner of conversation `id`.
    pub fn owner_of(&self, conversation_id: i64) -> i64 {
        1 + self.below(T_CONV, conversation_id, 1, self.users) as i64
    }

    /// Conversation `id` (1..=conversations).
    pub fn conversation(&self, id: i64) -> Conversation {
        Conversation {
            id,
            owner_id: self.owner_of(id),
            title: format!("#{id} {}", self.text(T_CONV, id, 24)),
            created_at: BASE_TIME + 86_400 * 365 + id * 60,
        }
    }

    /// The participants of conversation `id`, ascending: its owner and two
    /// other distinct users.
    pub fn participants(&self, conversation_id: i64) -> [i64; PARTICIPANTS] {
        let owner = self.owner_of(conversation_id);
        let u = self.users as i64;
        // Distinct offsets 1..u-1 from the owner, wrapping around.
        let a = 1 + self.below(T_PART, conversation_id, 1, (u - 1) as u64) as i64;
        let mut b = 1 + self.below(T_PART, conversation_id, 2, (u - 2) as u64) as i64;
        if b >= a {
            b += 1;
        }
        let mut p = [owner, (owner - 1 + a) % u + 1, (owner - 1 + b) % u + 1];
        p.sort_unstable();
        p
    }

    /// The conversation message `id` belongs to.
    pub fn conversation_of(&self, message_id: i64) -> i64 {
        1 + self.below(T_MSG, message_id, 1, self.conversations) as i64
    }

    /// Message `id` (1..=messages).
    pub fn message(&self, id: i64) -> Message {
        let conversation_id = self.conversation_of(id);
        let p = self.participants(conversation_id);
        Message {
            id,
            conversation_id,
            author_id: p[self.below(T_MSG, id, 2, PARTICIPANTS as u64) as usize],
            body: self.text(T_MSG, id, self.avg_body_bytes),
            created_at: BASE_TIME + 86_400 * 400 + id * 7,
        }
    }

    /// The `n`th message inserted by a worker's insert stream (not part of
    /// the loaded data).
    pub fn new_message(&self, stream: u64, n: u64) -> NewMessage {
        let key = ((stream << 40) ^ n) as i64;
        let conversation_id = 1 + self.below(T_NEW, key, 1, self.conversations) as i64;
        let p = self.participants(conversation_id);
        NewMessage {
            conversation_id,
            author_id: p[self.below(T_NEW, key, 2, PARTICIPANTS as u64) as usize],
            body: self.text(T_NEW, key, self.avg_body_bytes),
            created_at: BASE_TIME + 86_400 * 800 + n as i64,
        }
    }

    /// The shape as the report states it.
    pub fn info(&self) -> crate::results::DatasetInfo {
        crate::results::DatasetInfo {
            name: self.name.clone(),
            users: self.users,
            conversations: self.conversations,
            messages: self.messages,
            avg_body_bytes: self.avg_body_bytes,
        }
    }
}

/// An operation one worker repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// One message by primary key.
    PointRead,
    /// 1,000 consecutive messages by primary key.
    RangeScan,
    /// One transaction inserting one message.
    Insert,
    /// The 16 queries of a conversation page.
    PageLoad,
}

impl Op {
    /// The workload name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Op::PointRead => "point_read",
            Op::RangeScan => "range_scan",
            Op::Insert => "insert",
            Op::PageLoad => "page_load",
        }
    }
}

/// A workload of the run: one operation repeated by one worker, or the
/// mixed load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    /// One worker repeating one operation.
    Single(Op),
    /// Readers doing point reads while one writer inserts, all at once
    /// (reported as [`MIXED_READ`](crate::results::MIXED_READ) and
    /// [`MIXED_WRITE`](crate::results::MIXED_WRITE)).
    Mixed,
}

impl Workload {
    /// Every workload, in the order a run measures them (writes last, so
    /// the reads see exactly the loaded data).
    pub fn all() -> Vec<Workload> {
        vec![
            Workload::Single(Op::PointRead),
            Workload::Single(Op::RangeScan),
            Workload::Single(Op::PageLoad),
            Workload::Single(Op::Insert),
            Workload::Mixed,
        ]
    }

    /// The name in reports (`mixed` for the mixed load).
    pub fn name(self) -> &'static str {
        match self {
            Workload::Single(op) => op.name(),
            Workload::Mixed => "mixed",
        }
    }

    /// Parses a name as [`name`](Self::name) gives it.
    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::all().into_iter().find(|w| w.name() == name)
    }
}

/// Chooses the arguments of a worker's operations (seeded, so runs repeat)
/// and checks each answer.
#[derive(Clone, Debug)]
pub struct OpGen {
    spec: DatasetSpec,
    stream: u64,
    state: u64,
    inserted: u64,
}

impl OpGen {
    /// Worker `stream`'s generator over `spec` (streams differ, a stream
    /// repeats).
    pub fn new(spec: DatasetSpec, stream: u64) -> OpGen {
        let state = mix(spec.seed ^ mix(0x5eed ^ stream));
        OpGen {
            spec,
            stream,
            state,
            inserted: 0,
        }
    }

    /// The dataset.
    pub fn spec(&self) -> &DatasetSpec {
        &self.spec
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    fn uniform(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    /// Runs `op` once. Returns the time spent in the backend (argument
    /// choice and the correctness check are outside it); a wrong answer is
    /// [`BenchError::WrongResult`].
    pub async fn run(&mut self, op: Op, s: &mut dyn Session) -> Result<Duration, BenchError> {
        match op {
            Op::PointRead => {
                let id = self.uniform(1, self.spec.messages as i64);
                let t = Instant::now();
                let m = s.message(id).await?;
                let dt = t.elapsed();
                match m {
                    Some(m)
                        if m.id == id
                            && m.conversation_id == self.spec.conversation_of(id)
                            && !m.body.is_empty() =>
                    {
                        Ok(dt)
                    }
                    other => Err(wrong(op, format!("message {id} read as {other:?}"))),
                }
            }
            Op::RangeScan => {
                let last_start = self.spec.messages as i64 - RANGE_ROWS as i64 + 1;
                let first = self.uniform(1, last_start);
                let t = Instant::now();
                let rows = s.messages_from(first, RANGE_ROWS).await?;
                let dt = t.elapsed();
                let contiguous = rows
                    .iter()
                    .enumerate()
                    .all(|(k, m)| m.id == first + k as i64);
                if rows.len() == RANGE_ROWS as usize && contiguous {
                    Ok(dt)
                } else {
                    Err(wrong(
                        op,
                        format!(
                            "scan from {first} returned {} rows (ids {:?}..{:?}), expected {RANGE_ROWS} consecutive",
                            rows.len(),
                            rows.first().map(|m| m.id),
                            rows.last().map(|m| m.id)
                        ),
                    ))
                }
            }
            Op::Insert => {
                let m = self.spec.new_message(self.stream, self.inserted);
                self.inserted += 1;
                let t = Instant::now();
                let id = s.insert_message(&m).await?;
                let dt = t.elapsed();
                if id > self.spec.messages as i64 {
                    Ok(dt)
                } else {
                    Err(wrong(
                        op,
                        format!("insert returned id {id}, not above the loaded messages"),
                    ))
                }
            }
            Op::PageLoad => {
                let conversation_id = self.uniform(1, self.spec.conversations as i64);
                let p = self.spec.participants(conversation_id);
                let viewer = p[(self.next() % PARTICIPANTS as u64) as usize];
                let t = Instant::now();
                let page = page_load(s, viewer, conversation_id).await?;
                let dt = t.elapsed();
                check_page(&self.spec, &page, viewer, conversation_id).map_err(|d| wrong(op, d))?;
                Ok(dt)
            }
        }
    }
}

impl OpGen {
    /// Runs `op` `n` times and returns the total time spent in the backend
    /// (for criterion's `iter_custom`); the first failure stops it.
    pub async fn run_n(
        &mut self,
        op: Op,
        s: &mut dyn Session,
        n: u64,
    ) -> Result<Duration, BenchError> {
        let mut total = Duration::ZERO;
        for _ in 0..n {
            total += self.run(op, s).await?;
        }
        Ok(total)
    }
}

fn wrong(op: Op, detail: String) -> BenchError {
    BenchError::WrongResult {
        workload: op.name(),
        detail,
    }
}

fn missing(what: &str, id: i64) -> BenchError {
    BenchError::WrongResult {
        workload: Op::PageLoad.name(),
        detail: format!("{what} {id} is missing"),
    }
}

/// One conversation page as `viewer` sees it, in the 16 queries an ORM
/// issues (with [`PAGE_MESSAGES`] messages): the viewer, the conversation,
/// its participants, its latest messages, each message's author (one query
/// per message, the N+1 pattern), the message count and the viewer's
/// sidebar.
pub async fn page_load(
    s: &mut dyn Session,
    viewer: i64,
    conversation_id: i64,
) -> Result<Page, BenchError> {
    let viewer_row = s
        .user(viewer)
        .await?
        .ok_or_else(|| missing("user", viewer))?;
    let conversation = s
        .conversation(conversation_id)
        .await?
        .ok_or_else(|| missing("conversation", conversation_id))?;
    let participants = s.participants(conversation_id).await?;
    let recent = s.recent_messages(conversation_id, PAGE_MESSAGES).await?;
    let mut messages = Vec::with_capacity(recent.len());
    for m in recent {
        let author = s
            .user(m.author_id)
            .await?
            .ok_or_else(|| missing("user", m.author_id))?;
        messages.push((m, author));
    }
    let message_count = s.message_count(conversation_id).await?;
    let sidebar = s.conversations_of(viewer, SIDEBAR_CONVERSATIONS).await?;
    Ok(Page {
        viewer: viewer_row,
        conversation,
        participants,
        messages,
        message_count,
        sidebar,
    })
}

/// The checks every measured page passes (cheap; the tests compare whole
/// pages with the generator).
fn check_page(spec: &DatasetSpec, page: &Page, viewer: i64, conv: i64) -> Result<(), String> {
    if page.viewer.id != viewer || page.conversation.id != conv {
        return Err(format!(
            "page of conversation {conv} for user {viewer} shows conversation {} for user {}",
            page.conversation.id, page.viewer.id
        ));
    }
    if page.participants != spec.participants(conv) {
        return Err(format!(
            "conversation {conv} has participants {:?}, expected {:?}",
            page.participants,
            spec.participants(conv)
        ));
    }
    let newest_first = page.messages.windows(2).all(|w| w[0].0.id > w[1].0.id);
    let belong = page
        .messages
        .iter()
        .all(|(m, a)| m.conversation_id == conv && a.id == m.author_id);
    if !newest_first || !belong || page.message_count < page.messages.len() as i64 {
        return Err(format!(
            "conversation {conv}: messages not newest-first, not its own, or count {} below {}",
            page.message_count,
            page.messages.len()
        ));
    }
    if page.sidebar.iter().any(|c| spec.owner_of(c.id) != viewer) {
        return Err(format!(
            "sidebar of user {viewer} lists a conversation of someone else"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_pure_functions_of_seed_and_id() {
        let a = DatasetSpec::tiny(7);
        let b = DatasetSpec::tiny(7);
        let c = DatasetSpec::tiny(8);
        assert_eq!(a.message(5), b.message(5));
        assert_ne!(a.message(5).body, c.message(5).body);
        assert_ne!(a.message(5).body, a.message(6).body);
    }

    #[test]
    fn participants_are_distinct_and_include_owner() {
        let s = DatasetSpec {
            users: 3,
            ..DatasetSpec::tiny(1)
        };
        for c in 1..=50 {
            assert_eq!(s.participants(c), [1, 2, 3]);
        }
        let s = DatasetSpec::tiny(3);
        for c in 1..=s.conversations as i64 {
            let p = s.participants(c);
            assert!(p[0] < p[1] && p[1] < p[2], "{p:?}");
            assert!(p.contains(&s.owner_of(c)));
            assert!(p.iter().all(|&u| (1..=s.users as i64).contains(&u)));
        }
    }

    #[test]
    fn messages_are_written_by_participants_with_bodies_near_the_average() {
        let s = DatasetSpec::small(11);
        let mut total = 0usize;
        for id in 1..=2000 {
            let m = s.message(id);
            assert!(s.participants(m.conversation_id).contains(&m.author_id));
            assert!((1..=s.conversations as i64).contains(&m.conversation_id));
            total += m.body.len();
        }
        let avg = total / 2000;
        assert!((180..=230).contains(&avg), "average body {avg}");
    }

    #[test]
    fn invalid_shapes_are_named() {
        let mut s = DatasetSpec::tiny(1);
        s.messages = 10;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("messages = 10"), "{e}");
        let mut s = DatasetSpec::tiny(1);
        s.name = "a-b".into();
        assert!(s.validate().unwrap_err().to_string().contains("a-b"));
        DatasetSpec::large(1).validate().unwrap();
    }
}
