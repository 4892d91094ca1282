//! Element types and reduction operators.

use half::{bf16, f16};

/// The element types symmem moves and reduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// 8-bit unsigned integer.
    U8,
    /// 32-bit signed integer.
    I32,
    /// 32-bit unsigned integer.
    U32,
    /// 64-bit signed integer.
    I64,
    /// 64-bit unsigned integer.
    U64,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
}

impl DType {
    /// Size of one element in bytes.
    pub const fn size(self) -> usize {
        match self {
            DType::U8 => 1,
            DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    /// Whether this is a floating-point type.
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            DType::U8 => "u8",
            DType::I32 => "i32",
            DType::U32 => "u32",
            DType::I64 => "i64",
            DType::U64 => "u64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F32 => "f32",
            DType::F64 => "f64",
        };
        f.write_str(s)
    }
}

/// Reduction operators of `all_reduce` and `reduce_scatter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Sum over ranks.
    Sum,
    /// Product over ranks.
    Prod,
    /// Maximum over ranks.
    Max,
    /// Minimum over ranks.
    Min,
    /// Arithmetic mean over ranks: the sum divided by the group size. For integers, as NCCL's
    /// `ncclAvg` computes it: the sum wraps in the element type (like `Sum`), then is divided
    /// by the group size, truncating toward zero; it is the mean only when the sum fits.
    Avg,
}

mod sealed {
    pub trait Sealed {}
}

/// A plain-old-data element type that buffers can hold and collectives can reduce.
///
/// Implemented for `u8`, `i32`, `u32`, `i64`, `u64`, [`f16`](struct@half::f16), [`bf16`](struct@half::bf16), `f32` and `f64`; sealed.
pub trait Element:
    Copy + Send + Sync + PartialEq + std::fmt::Debug + 'static + sealed::Sealed
{
    /// The runtime tag of this type.
    const DTYPE: DType;
    /// The additive identity.
    const ZERO: Self;
    /// Combine two values with `op` (for `Avg` this sums; the division happens once at the end).
    fn combine(a: Self, b: Self, op: ReduceOp) -> Self;
    /// Divide by the group size (used by `Avg`).
    fn div_count(a: Self, n: usize) -> Self;
    /// Convert to f64 (for tests, references and error norms).
    fn to_f64(self) -> f64;
    /// Convert from f64, rounding to nearest (saturating for integers).
    fn from_f64(v: f64) -> Self;
}

macro_rules! int_element {
    ($t:ty, $d:ident) => {
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            const ZERO: Self = 0;
            #[inline]
            fn combine(a: Self, b: Self, op: ReduceOp) -> Self {
                match op {
                    ReduceOp::Sum | ReduceOp::Avg => a.wrapping_add(b),
                    ReduceOp::Prod => a.wrapping_mul(b),
                    ReduceOp::Max => a.max(b),
                    ReduceOp::Min => a.min(b),
                }
            }
            /// Division by the full group size, truncating toward zero (NCCL's `ncclAvg`): done
            /// in `i128`, so a size the element type cannot hold (256 ranks of `u8`) is not
            /// truncated. The quotient's magnitude is at most `a`'s, so it fits.
            #[inline]
            fn div_count(a: Self, n: usize) -> Self {
                (a as i128 / n.max(1) as i128) as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn from_f64(v: f64) -> Self {
                v.round() as $t
            }
        }
    };
}
int_element!(u8, U8);
int_element!(i32, I32);
int_element!(u32, U32);
int_element!(i64, I64);
int_element!(u64, U64);

macro_rules! float_element {
    ($t:ty, $d:ident) => {
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            const ZERO: Self = 0.0;
            #[inline]
            fn combine(a: Self, b: Self, op: ReduceOp) -> Self {
                match op {
                    ReduceOp::Sum | ReduceOp::Avg => a + b,
                    ReduceOp::Prod => a * b,
                    ReduceOp::Max => a.max(b),
                    ReduceOp::Min => a.min(b),
                }
            }
            #[inline]
            fn div_count(a: Self, n: usize) -> Self {
                a / (n as $t)
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
        }
    };
}
float_element!(f32, F32);
float_element!(f64, F64);

macro_rules! half_element {
    ($t:ty, $d:ident) => {
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            const ZERO: Self = <$t>::ZERO;
            /// Reduced in f32 and rounded once per step, as NCCL does for 16-bit floats.
            #[inline]
            fn combine(a: Self, b: Self, op: ReduceOp) -> Self {
                let (x, y) = (a.to_f32(), b.to_f32());
                <$t>::from_f32(match op {
                    ReduceOp::Sum | ReduceOp::Avg => x + y,
                    ReduceOp::Prod => x * y,
                    ReduceOp::Max => x.max(y),
                    ReduceOp::Min => x.min(y),
                })
            }
            #[inline]
            fn div_count(a: Self, n: usize) -> Self {
                <$t>::from_f32(a.to_f32() / n as f32)
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self.to_f64()
            }
            #[inline]
            fn from_f64(v: f64) -> Self {
                <$t>::from_f64(v)
            }
        }
    };
}
half_element!(f16, F16);
half_element!(bf16, BF16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_rust_types() {
        assert_eq!(DType::F16.size(), std::mem::size_of::<f16>());
        assert_eq!(DType::BF16.size(), std::mem::size_of::<bf16>());
        assert_eq!(DType::F64.size(), std::mem::size_of::<f64>());
        assert_eq!(DType::I32.size(), std::mem::size_of::<i32>());
    }

    #[test]
    fn combine_follows_the_operator() {
        assert_eq!(i32::combine(3, 4, ReduceOp::Sum), 7);
        assert_eq!(i32::combine(3, 4, ReduceOp::Prod), 12);
        assert_eq!(i32::combine(3, 4, ReduceOp::Max), 4);
        assert_eq!(f32::combine(3.0, 4.0, ReduceOp::Min), 3.0);
        assert_eq!(i64::div_count(9, 2), 4);
        assert_eq!(i32::div_count(-7, 2), -3, "truncates toward zero");
        // Group sizes beyond the element type are not truncated.
        assert_eq!(u8::div_count(255, 256), 0);
        assert_eq!(u8::div_count(255, 257), 0);
        assert_eq!(i32::div_count(i32::MIN, (1usize << 32) + 1), 0);
        assert_eq!(u64::div_count(u64::MAX, 3), u64::MAX / 3);
        assert_eq!(i64::div_count(i64::MIN, 1), i64::MIN);
        assert_eq!(
            bf16::combine(bf16::from_f32(1.5), bf16::from_f32(2.0), ReduceOp::Sum).to_f32(),
            3.5
        );
    }
}
