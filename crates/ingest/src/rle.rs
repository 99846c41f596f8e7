//! RLE Lossless (PS3.5 Annex G) for greyscale frames.
//!
//! dicom-rs has an RLE decoder, but fuzzing found inputs that make it index
//! out of bounds (a panic, not an error). RLE is simple enough to own: a
//! 64-byte header of segment offsets, then one PackBits segment per byte
//! plane, most significant plane first. Output never grows past the frame.

/// Why an RLE frame could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RleError {
    /// Fewer than 64 bytes: no room for the RLE header.
    #[error("RLE frame of {0} bytes is shorter than its 64-byte header")]
    NoHeader(usize),
    /// The header announces a number of segments that does not match the image.
    #[error(
        "RLE header declares {found} segment(s), a {bits}-bit greyscale frame needs {expected}"
    )]
    SegmentCount {
        /// Segments declared.
        found: u32,
        /// Segments the image needs.
        expected: u32,
        /// Bits Allocated.
        bits: u16,
    },
    /// A segment offset points outside the frame or before the header's end.
    #[error("RLE segment {segment} offset {offset} is outside the frame ({len} bytes)")]
    BadOffset {
        /// Segment index.
        segment: usize,
        /// Its offset.
        offset: u32,
        /// Frame length.
        len: usize,
    },
    /// A segment decodes to fewer bytes than the frame has pixels.
    #[error("RLE segment {segment} decodes to {got} bytes, the frame has {expected} pixels")]
    ShortSegment {
        /// Segment index.
        segment: usize,
        /// Bytes decoded.
        got: usize,
        /// Pixels in the frame.
        expected: usize,
    },
}

/// Decodes one greyscale RLE frame of `pixels` samples, `bits_allocated` 8 or 16.
pub(crate) fn decode_frame(
    data: &[u8],
    pixels: usize,
    bits_allocated: u16,
) -> Result<Vec<u16>, RleError> {
    let header = data.get(..64).ok_or(RleError::NoHeader(data.len()))?;
    let word = |i: usize| {
        u32::from_le_bytes([
            header[4 * i],
            header[4 * i + 1],
            header[4 * i + 2],
            header[4 * i + 3],
        ])
    };
    let expected = u32::from(bits_allocated / 8);
    let count = word(0);
    if count != expected {
        return Err(RleError::SegmentCount {
            found: count,
            expected,
            bits: bits_allocated,
        });
    }
    let offsets: Vec<u32> = (1..=count as usize).map(word).collect();
    let mut planes = Vec::with_capacity(offsets.len());
    for (segment, &offset) in offsets.iter().enumerate() {
        let start = offset as usize;
        let end = offsets
            .get(segment + 1)
            .map_or(data.len(), |next| (*next as usize).min(data.len()));
        if start < 64 || start > end {
            return Err(RleError::BadOffset {
                segment,
                offset,
                len: data.len(),
            });
        }
        let plane = unpack_bits(&data[start..end], pixels);
        if plane.len() < pixels {
            return Err(RleError::ShortSegment {
                segment,
                got: plane.len(),
                expected: pixels,
            });
        }
        planes.push(plane);
    }
    Ok(match planes.as_slice() {
        [low] => low.iter().map(|b| u16::from(*b)).collect(),
        [high, low] => high
            .iter()
            .zip(low)
            .map(|(h, l)| u16::from_be_bytes([*h, *l]))
            .collect(),
        _ => unreachable!("segment count checked against Bits Allocated 8 or 16"),
    })
}

/// PackBits, stopping once `limit` bytes are out (trailing padding is ignored).
fn unpack_bits(mut input: &[u8], limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(limit);
    while out.len() < limit {
        let Some((&header, rest)) = input.split_first() else {
            break;
        };
        input = rest;
        let room = limit - out.len();
        match header as i8 {
            n @ 0..=127 => {
                let take = (n as usize + 1).min(input.len());
                out.extend_from_slice(&input[..take.min(room)]);
                input = &input[take..];
            }
            -128 => {}
            n => {
                let Some((&value, rest)) = input.split_first() else {
                    break;
                };
                input = rest;
                let times = (1 - i32::from(n)) as usize;
                out.extend(std::iter::repeat_n(value, times.min(room)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(segments: &[&[u8]]) -> Vec<u8> {
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(&(segments.len() as u32).to_le_bytes());
        let mut offset = 64u32;
        let mut body = Vec::new();
        for (i, s) in segments.iter().enumerate() {
            header[4 + 4 * i..8 + 4 * i].copy_from_slice(&offset.to_le_bytes());
            body.extend_from_slice(s);
            offset += s.len() as u32;
        }
        header.extend(body);
        header
    }

    #[test]
    fn literal_and_repeat_runs_decode() {
        // 2 literal bytes, then 3 x 0x07, then a no-op.
        assert_eq!(
            unpack_bits(&[1, 9, 8, 0xFE, 7, 0x80], 10),
            vec![9, 8, 7, 7, 7]
        );
    }

    #[test]
    fn sixteen_bit_frames_join_high_and_low_planes() {
        let data = frame(&[&[1, 0x12, 0x34], &[0xFF, 0x56]]);
        assert_eq!(decode_frame(&data, 2, 16).unwrap(), vec![0x1256, 0x3456]);
    }

    #[test]
    fn short_segments_and_bad_headers_are_errors() {
        let short = frame(&[&[0, 5]]);
        assert!(matches!(
            decode_frame(&short, 4, 8),
            Err(RleError::ShortSegment { .. })
        ));
        let wrong_count = frame(&[&[0, 5]]);
        assert!(matches!(
            decode_frame(&wrong_count, 1, 16),
            Err(RleError::SegmentCount { .. })
        ));
        assert_eq!(decode_frame(&[0; 10], 1, 8), Err(RleError::NoHeader(10)));
        let mut bad_offset = frame(&[&[0, 5]]);
        bad_offset[4] = 200;
        assert!(matches!(
            decode_frame(&bad_offset, 1, 8),
            Err(RleError::BadOffset { .. })
        ));
    }

    #[test]
    fn overlong_runs_stop_at_the_frame_size() {
        let data = frame(&[&[0x81, 1, 0x81, 2]]); // 2 x 128 bytes
        assert_eq!(decode_frame(&data, 100, 8).unwrap().len(), 100);
    }
}
