//! Dagy's run-state store: the RunStore trait, the run and task records, and the embedded in-memory store.
