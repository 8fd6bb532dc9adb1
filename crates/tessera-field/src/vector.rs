//! Element-wise loops compiled for the CPU's vector extensions.
//!
//! The workspace builds for baseline x86-64, where 64-bit comparisons, selects and multiplies
//! do not vectorize, so a loop over `Z_t` elements runs one element at a time. [`vectorized`]
//! runs a closure inside a function compiled for AVX-512 or AVX2 (whichever the CPU has), and
//! the loops inlined into it vectorize there.
//!
//! Written by hand (a branch on the CPU and one `#[target_feature]` function per extension)
//! because pulp's `Arch::dispatch`, the crate for this, left the closure of an earlier `zt::dot`
//! out of line: 32 µs for 16,384 terms against 3.7 µs inlined here.

#![allow(unsafe_code, reason = "calling a build of safe code for an extension once the CPU is known to have it")]

/// Runs `f` compiled for the widest vector extension this CPU has (plain code without one).
/// Mark the closure `#[inline(always)]`: only code inlined into the dispatched function is
/// compiled for its extension.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512bw")
        {
            // SAFETY: the CPU has every extension the function is compiled for.
            return unsafe { avx512(f) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw")]
fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
