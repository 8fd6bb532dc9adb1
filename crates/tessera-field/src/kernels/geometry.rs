//! Shapes of images and sliding windows.

/// The shape of one image, channels first (NCHW without the batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageShape {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl ImageShape {
    /// A shape from its three dimensions.
    pub const fn new(c: usize, h: usize, w: usize) -> Self {
        Self { c, h, w }
    }

    /// Elements per image.
    pub const fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Whether the shape holds no element.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pixels per channel.
    pub const fn plane(&self) -> usize {
        self.h * self.w
    }
}

/// A 2-D sliding window: kernel, stride and zero padding (top, left, bottom, right).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window2d {
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Vertical and horizontal stride.
    pub stride: [usize; 2],
    /// Padding: top, left, bottom, right.
    pub pads: [usize; 4],
}

impl Window2d {
    /// A square window with equal stride and no padding.
    pub const fn square(k: usize, stride: usize) -> Self {
        Self { kernel: [k, k], stride: [stride, stride], pads: [0; 4] }
    }

    /// Output height and width on an `h × w` input, or `None` when the window does not fit or a
    /// stride is zero.
    pub fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.stride;
        let ph = h + self.pads[0] + self.pads[2];
        let pw = w + self.pads[1] + self.pads[3];
        if sh == 0 || sw == 0 || kh == 0 || kw == 0 || kh > ph || kw > pw {
            return None;
        }
        Some(((ph - kh) / sh + 1, (pw - kw) / sw + 1))
    }

    /// Positions per window.
    pub const fn size(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// For each output position of an `h × w` input (row-major), how many of its window's
    /// positions lie inside the image rather than in the padding; `None` when the window does
    /// not fit.
    pub fn inside_counts(&self, h: usize, w: usize) -> Option<Vec<usize>> {
        let (oh, ow) = self.output_hw(h, w)?;
        let inside = |o: usize, axis: usize, len: usize| {
            let start = (o * self.stride[axis]) as isize - self.pads[axis] as isize;
            let end = (start + self.kernel[axis] as isize).min(len as isize);
            (end - start.max(0)).max(0) as usize
        };
        Some((0..oh).flat_map(|oy| (0..ow).map(move |ox| inside(oy, 0, h) * inside(ox, 1, w))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_counts_skip_the_padding() {
        let win = Window2d { kernel: [3, 3], stride: [2, 2], pads: [1, 1, 1, 1] };
        // 5 × 5 input: output 3 × 3; corners see 2 × 2, edges 2 × 3, the centre 3 × 3.
        assert_eq!(win.inside_counts(5, 5).unwrap(), vec![4, 6, 4, 6, 9, 6, 4, 6, 4]);
        assert_eq!(Window2d::square(2, 2).inside_counts(4, 4).unwrap(), vec![4; 4]);
        assert_eq!(Window2d::square(5, 1).inside_counts(4, 4), None);
    }
}
