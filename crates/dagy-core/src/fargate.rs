//! Fargate task sizes and AWS's valid cpu/memory combinations.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A Fargate task size: cpu in CPU units (1024 = 1 vCPU) and memory in MiB, as `RunTask` and
/// `RegisterTaskDefinition` take them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FargateSize {
    /// CPU units: 256, 512, 1024, 2048, 4096, 8192 or 16384.
    pub cpu: u32,
    /// Memory in MiB.
    pub memory_mb: u32,
}

/// One row of the seed's table: a cpu value and the memory it allows (inclusive, in steps).
struct Row {
    cpu: u32,
    min_mb: u32,
    max_mb: u32,
    step_mb: u32,
}

/// The seed's valid combinations with AWS's increments: 1 GB steps up to 4 vCPU, 4 GB steps at
/// 8 vCPU, 8 GB steps at 16 vCPU. 0.25 vCPU allows 512 MB, 1 GB and 2 GB.
const ROWS: [Row; 7] = [
    Row {
        cpu: 256,
        min_mb: 512,
        max_mb: 2048,
        step_mb: 0,
    },
    Row {
        cpu: 512,
        min_mb: 1024,
        max_mb: 4096,
        step_mb: 1024,
    },
    Row {
        cpu: 1024,
        min_mb: 2048,
        max_mb: 8192,
        step_mb: 1024,
    },
    Row {
        cpu: 2048,
        min_mb: 4096,
        max_mb: 16384,
        step_mb: 1024,
    },
    Row {
        cpu: 4096,
        min_mb: 8192,
        max_mb: 30720,
        step_mb: 1024,
    },
    Row {
        cpu: 8192,
        min_mb: 16384,
        max_mb: 61440,
        step_mb: 4096,
    },
    Row {
        cpu: 16384,
        min_mb: 32768,
        max_mb: 122880,
        step_mb: 8192,
    },
];

impl Row {
    fn allows(&self, mb: u32) -> bool {
        if self.step_mb == 0 {
            return matches!(mb, 512 | 1024 | 2048);
        }
        (self.min_mb..=self.max_mb).contains(&mb) && (mb - self.min_mb).is_multiple_of(self.step_mb)
    }

    fn describe(&self) -> String {
        if self.step_mb == 0 {
            return "512, 1024 or 2048 MB".into();
        }
        format!(
            "{} to {} MB in steps of {} MB",
            self.min_mb, self.max_mb, self.step_mb
        )
    }
}

impl FargateSize {
    /// The small tier's size (0.5 vCPU, 1 GB): what a run sent to ECS without a Fargate tier of
    /// its own gets, and the worker task definition's default.
    pub const SMALL: FargateSize = FargateSize {
        cpu: 512,
        memory_mb: 1024,
    };

    /// Checks a custom size against the valid combinations.
    pub fn new(cpu: u32, memory_mb: u32) -> Result<FargateSize, Error> {
        let Some(row) = ROWS.iter().find(|r| r.cpu == cpu) else {
            return Err(Error::InvalidFargateSize(format!(
                "Fargate cpu {cpu} is not valid; use one of 256, 512, 1024, 2048, 4096, 8192, 16384 \
                 (0.25 to 16 vCPU)"
            )));
        };
        if !row.allows(memory_mb) {
            return Err(Error::InvalidFargateSize(format!(
                "Fargate memory {memory_mb} MB does not go with {} vCPU; that cpu allows {}",
                vcpu(cpu),
                row.describe()
            )));
        }
        Ok(FargateSize { cpu, memory_mb })
    }

    /// The size in vCPU.
    pub fn vcpu(self) -> f64 {
        f64::from(self.cpu) / 1024.0
    }
}

/// ECS's `stoppedReason` for a container killed for using more memory than its size allows. The
/// local Docker backend reports an out-of-memory kill in the same words.
pub const OUT_OF_MEMORY: &str = "OutOfMemoryError: Container killed due to memory usage";

/// Why a run ended when its worker container stopped before the run did: ECS's stopped reason
/// (or Docker's equivalent) and the worker's exit code.
pub fn worker_stopped(reason: &str, exit_code: Option<i32>) -> String {
    match exit_code {
        Some(code) => format!("its worker task stopped: {reason} (exit code {code})"),
        None => format!("its worker task stopped: {reason}"),
    }
}

fn vcpu(cpu: u32) -> String {
    let v = f64::from(cpu) / 1024.0;
    format!("{v}")
}

impl fmt::Display for FargateSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} vCPU / {} MB", vcpu(self.cpu), self.memory_mb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RuntimeTier;

    #[test]
    fn quarter_vcpu_allows_exactly_three_sizes() {
        for mb in [512, 1024, 2048] {
            assert!(FargateSize::new(256, mb).is_ok(), "{mb}");
        }
        for mb in [256, 1536, 3072, 4096] {
            assert!(FargateSize::new(256, mb).is_err(), "{mb}");
        }
    }

    #[test]
    fn edges_of_each_row_are_valid_and_one_step_beyond_is_not() {
        let cases = [
            (512, 1024, 4096, 1024),
            (1024, 2048, 8192, 1024),
            (2048, 4096, 16384, 1024),
            (4096, 8192, 30720, 1024),
            (8192, 16384, 61440, 4096),
            (16384, 32768, 122880, 8192),
        ];
        for (cpu, min, max, step) in cases {
            assert!(FargateSize::new(cpu, min).is_ok(), "{cpu}/{min}");
            assert!(FargateSize::new(cpu, max).is_ok(), "{cpu}/{max}");
            assert!(FargateSize::new(cpu, min - step).is_err(), "{cpu}/below");
            assert!(FargateSize::new(cpu, max + step).is_err(), "{cpu}/above");
        }
    }

    #[test]
    fn memory_off_the_increment_is_refused() {
        assert!(FargateSize::new(4096, 9000).is_err());
        assert!(FargateSize::new(8192, 20480).is_ok());
        assert!(
            FargateSize::new(8192, 18432).is_err(),
            "8 vCPU moves in 4 GB steps"
        );
        assert!(FargateSize::new(16384, 40960).is_ok());
        assert!(
            FargateSize::new(16384, 36864).is_err(),
            "16 vCPU moves in 8 GB steps"
        );
    }

    #[test]
    fn an_unknown_cpu_names_the_valid_ones() {
        let err = FargateSize::new(3072, 8192).expect_err("3 vCPU does not exist");
        assert!(err.to_string().contains("256, 512, 1024"), "{err}");
    }

    #[test]
    fn a_bad_pair_says_what_the_cpu_allows() {
        let err = FargateSize::new(1024, 1024).expect_err("1 vCPU needs 2 GB");
        assert_eq!(
            err.to_string(),
            "Fargate memory 1024 MB does not go with 1 vCPU; that cpu allows 2048 to 8192 MB in steps of 1024 MB"
        );
    }

    #[test]
    fn every_fargate_tier_is_a_valid_combination() {
        for tier in RuntimeTier::ALL {
            if let Some(size) = tier.fargate_resources() {
                assert!(FargateSize::new(size.cpu, size.memory_mb).is_ok(), "{tier}");
            }
        }
        let xl = RuntimeTier::Xlarge
            .fargate_resources()
            .expect("xlarge is Fargate");
        assert_eq!(xl.to_string(), "4 vCPU / 12288 MB");
    }
}
