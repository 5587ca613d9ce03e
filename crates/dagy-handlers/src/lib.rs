//! Example task handlers (echo, sum, sleep, fail, flaky, spin) used by the example flows and the tests.
