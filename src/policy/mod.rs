//! Which alerts a trigger takes: CEL conditions and dedup keys, topic patterns checked before they are written,
//! and the Falco rules files a topic is checked against. Decisions only: nothing here does I/O.

pub mod condition;
pub mod rules;
pub mod topic_check;
