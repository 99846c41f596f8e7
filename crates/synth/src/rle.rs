//! DICOM RLE Lossless encoder (PS3.5 Annex G): one segment per byte plane,
//! most significant byte first, each row PackBits-coded on its own.

/// Encodes one frame of `rows × cols` samples, each `bytes_per_sample`
/// bytes little-endian in `frame`, into an RLE fragment (header + segments).
pub(crate) fn encode_frame(
    frame: &[u8],
    rows: usize,
    cols: usize,
    bytes_per_sample: usize,
) -> Vec<u8> {
    debug_assert_eq!(frame.len(), rows * cols * bytes_per_sample);
    let mut segments = Vec::with_capacity(bytes_per_sample);
    for plane in (0..bytes_per_sample).rev() {
        let mut seg = Vec::with_capacity(rows * cols / 2);
        let mut row = vec![0u8; cols];
        for r in 0..rows {
            for (c, b) in row.iter_mut().enumerate() {
                *b = frame[(r * cols + c) * bytes_per_sample + plane];
            }
            pack_bits(&row, &mut seg);
        }
        if seg.len() % 2 == 1 {
            seg.push(0);
        }
        segments.push(seg);
    }
    let mut out = Vec::with_capacity(64 + segments.iter().map(Vec::len).sum::<usize>());
    out.extend_from_slice(&(segments.len() as u32).to_le_bytes());
    let mut offset = 64u32;
    for slot in 0..15 {
        let value = if slot < segments.len() { offset } else { 0 };
        out.extend_from_slice(&value.to_le_bytes());
        if let Some(s) = segments.get(slot) {
            offset += s.len() as u32;
        }
    }
    for s in segments {
        out.extend_from_slice(&s);
    }
    out
}

/// Appends the PackBits code of `row` to `out`: runs of 2–128 equal bytes
/// as (1 − n, byte), everything else as literals of up to 128 bytes.
fn pack_bits(row: &[u8], out: &mut Vec<u8>) {
    let n = row.len();
    let mut i = 0;
    while i < n {
        let run = run_length(row, i);
        if run >= 2 {
            out.push((257 - run) as u8);
            out.push(row[i]);
            i += run;
            continue;
        }
        let start = i;
        while i < n && i - start < 128 && (i == start || run_length(row, i) < 3) {
            i += 1;
        }
        out.push((i - start - 1) as u8);
        out.extend_from_slice(&row[start..i]);
    }
}

/// Length (≤ 128) of the run of bytes equal to `row[i]` starting at `i`.
fn run_length(row: &[u8], i: usize) -> usize {
    let v = row[i];
    row[i..].iter().take(128).take_while(|&&b| b == v).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A straightforward PackBits decoder, to check the encoder against.
    fn unpack(mut seg: &[u8], len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < len && !seg.is_empty() {
            let h = seg[0] as i8;
            if h >= 0 {
                let n = h as usize + 1;
                out.extend_from_slice(&seg[1..1 + n]);
                seg = &seg[1 + n..];
            } else if h != -128 {
                let n = (1 - h as i32) as usize;
                out.extend(std::iter::repeat_n(seg[1], n));
                seg = &seg[2..];
            } else {
                seg = &seg[1..];
            }
        }
        out
    }

    #[test]
    fn round_trips_two_planes() {
        let (rows, cols) = (3, 300);
        let mut frame = Vec::new();
        for r in 0..rows {
            for c in 0..cols {
                let v: u16 = if c < 140 {
                    7
                } else {
                    (c * 37 + r * 11) as u16 % 4096
                };
                frame.extend_from_slice(&v.to_le_bytes());
            }
        }
        let enc = encode_frame(&frame, rows, cols, 2);
        assert_eq!(u32::from_le_bytes([enc[0], enc[1], enc[2], enc[3]]), 2);
        let off = |k: usize| {
            u32::from_le_bytes([
                enc[4 + 4 * k],
                enc[5 + 4 * k],
                enc[6 + 4 * k],
                enc[7 + 4 * k],
            ]) as usize
        };
        let high = unpack(&enc[off(0)..off(1)], rows * cols);
        let low = unpack(&enc[off(1)..], rows * cols);
        for i in 0..rows * cols {
            assert_eq!(high[i], frame[2 * i + 1]);
            assert_eq!(low[i], frame[2 * i]);
        }
    }
}
