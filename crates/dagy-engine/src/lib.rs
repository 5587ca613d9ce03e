//! Dagy's local executor: runs a flow's tasks in order with retries, jitter, timeouts, budgets and cancellation, through a RunStore.
