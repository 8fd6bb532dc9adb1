//! Dense matrix products through the `gemm` crate (f32 and f64 only).

/// The element types of [`matmul`]: `f32` and `f64`.
#[cfg(target_arch = "x86_64")]
pub trait GemmScalar: super::avx512::Avx512Scalar + std::ops::Mul<Output = Self> + std::ops::AddAssign {
    /// The additive identity.
    const ZERO: Self;
    /// The multiplicative identity.
    const ONE: Self;
}

/// The element types of [`matmul`]: `f32` and `f64`.
#[cfg(not(target_arch = "x86_64"))]
pub trait GemmScalar:
    Copy + Default + Send + Sync + 'static + std::ops::Mul<Output = Self> + std::ops::AddAssign
{
    /// The additive identity.
    const ZERO: Self;
    /// The multiplicative identity.
    const ONE: Self;
}

impl GemmScalar for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

impl GemmScalar for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

/// `dst = lhs · rhs` for row-major `lhs` (`m × k`), `rhs` (`k × n`) and `dst` (`m × n`), on up to
/// `threads` threads: Tessera's AVX-512 kernel (on the calling thread and the kernels' helpers)
/// where the CPU has it, the `gemm` crate (on the rayon pool) otherwise.
///
/// # Panics
/// If a slice is shorter than its shape: the callers size them from validated layer shapes.
pub fn matmul<T: GemmScalar>(m: usize, n: usize, k: usize, lhs: &[T], rhs: &[T], dst: &mut [T], threads: usize) {
    assert!(lhs.len() >= m * k && rhs.len() >= k * n && dst.len() >= m * n, "matmul operand sizes");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        dst[..m * n].fill(T::ZERO);
        return;
    }
    // Few columns (an FC layer on a small batch) leave the tile kernel's panels mostly empty.
    #[cfg(target_arch = "x86_64")]
    if n >= 8 && super::avx512::available() {
        return super::avx512::matmul(m, n, k, lhs, rhs, dst, threads);
    }
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    #[allow(unsafe_code, reason = "gemm's raw-pointer API; every extent is checked by the assert above")]
    // SAFETY: the three buffers hold at least m·k, k·n and m·n elements with the strides given
    // (row-major: row stride = columns, column stride = 1), and `dst` does not alias the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            T::ZERO,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_product() {
        let a = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2×3
        let b = [7.0f64, 8.0, 9.0, 10.0, 11.0, 12.0]; // 3×2
        let mut c = [0.0; 4];
        matmul(2, 2, 3, &a, &b, &mut c, 1);
        assert_eq!(c, [58.0, 64.0, 139.0, 154.0]);
    }
}
