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
}
