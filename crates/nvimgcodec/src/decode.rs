//! One batch: parse each stream, refuse what cannot be returned exactly,
//! describe an output image for the rest, decode them with one call, and
//! collect each image's samples or its failure.
//!
//! The call sequence (nvimgcodec.h 0.9.0):
//!
//! 1. `nvimgcodecCodeStreamCreateFromHostMem` per stream (the bytes are
//!    borrowed, not copied, so they outlive the batch) and
//!    `nvimgcodecCodeStreamGetImageInfo` for its header;
//! 2. `nvimgcodecImageCreate` per accepted stream, describing one plane of
//!    the codestream's own sample type and precision, `GRAY` colour, `P_Y`
//!    format, no orientation, over a buffer from here;
//! 3. `nvimgcodecDecoderDecode` for all of them, `nvimgcodecFutureWaitForAll`,
//!    `nvimgcodecFutureGetProcessingStatus` (one status per image, in order);
//! 4. device output only: `cuCtxSynchronize` (the future covers host work
//!    only, per the header) then `cuMemcpyDtoH` per decoded image;
//! 5. destroy the future, images and code streams ([`Handles`]).

use std::ffi::c_int;

use crate::cuda::{CudaDriver, DevicePtr, ARENA_ALIGN};
use crate::ffi::{self, Api, ImageInfo};
use crate::messages::MessageLog;
use crate::{Decoded, Error, Output, ProcessingStatus, State, Status};

/// What one batch needs from the loaded codec.
pub(crate) struct Batch<'a> {
    pub api: &'a Api,
    pub instance: ffi::Instance,
    pub output: Output,
    pub cuda: Option<&'a CudaDriver>,
    pub log: &'a MessageLog,
}

/// The samples one image decodes to, as read from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    width: u32,
    height: u32,
    sample_type: ffi::SampleDataType,
    /// As parsed (0 = the type's full width); passed back unchanged, since
    /// nvJPEG2000 treats any other value as a request to convert.
    parsed_precision: u8,
    /// Bits per sample, 0 resolved.
    precision: u8,
    signed: bool,
    bytes_per_sample: usize,
}

impl Layout {
    fn pixels(&self) -> usize {
        self.width as usize * self.height as usize
    }

    fn bytes(&self) -> usize {
        self.pixels() * self.bytes_per_sample
    }
}

/// Reads what the parser found and decides whether it can be returned
/// exactly: one component, 8 or 16-bit storage, within `max_pixels`.
fn layout_of(info: &ImageInfo, max_pixels: u64) -> Result<Layout, Error> {
    let codec = info.codec_name();
    let plane = &info.plane_info[0];
    let components = info.num_planes.saturating_mul(plane.num_channels.max(1));
    if info.num_planes != 1 || plane.num_channels != 1 {
        return Err(Error::MultiComponent { components, codec });
    }
    let (width, height) = (plane.width, plane.height);
    if width == 0 || height == 0 {
        return Err(Error::NoPixels { width, height });
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(Error::TooLarge {
            width,
            height,
            max_pixels,
        });
    }
    let unsupported = || Error::UnsupportedSamples {
        sample_type: plane.sample_type,
        precision: plane.precision,
        codec: codec.clone(),
    };
    let (bytes_per_sample, signed, bits) = match plane.sample_type {
        ffi::SAMPLE_DATA_TYPE_UINT8 => (1, false, 8),
        ffi::SAMPLE_DATA_TYPE_UINT16 => (2, false, 16),
        ffi::SAMPLE_DATA_TYPE_INT16 => (2, true, 16),
        // nvJPEG2000 decodes signed samples only above 8 bits
        // (cuda_decoder.cpp: "unsupported bit depth for a signed type").
        ffi::SAMPLE_DATA_TYPE_INT8 => return Err(unsupported()),
        _ => return Err(unsupported()),
    };
    let precision = match plane.precision {
        0 => bits,
        p if p <= bits => p,
        _ => return Err(unsupported()),
    };
    Ok(Layout {
        width,
        height,
        sample_type: plane.sample_type,
        parsed_precision: plane.precision,
        precision,
        signed,
        bytes_per_sample,
    })
}

/// The output image: the codestream's own samples in one plane, with
/// nothing for the decoder to convert.
fn output_info(
    parsed: &ImageInfo,
    layout: &Layout,
    buffer: *mut std::ffi::c_void,
    kind: ffi::ImageBufferKind,
) -> ImageInfo {
    let mut info = *parsed;
    info.struct_next = std::ptr::null_mut();
    info.color_spec = ffi::COLORSPEC_GRAY;
    info.chroma_subsampling = ffi::SAMPLING_GRAY;
    info.sample_format = ffi::SAMPLEFORMAT_P_Y;
    info.orientation = ffi::Orientation::none();
    info.num_planes = 1;
    let plane = &mut info.plane_info[0];
    plane.struct_type = ffi::STRUCTURE_TYPE_IMAGE_PLANE_INFO;
    plane.struct_size = size_of::<ffi::ImagePlaneInfo>();
    plane.struct_next = std::ptr::null_mut();
    plane.width = layout.width;
    plane.height = layout.height;
    plane.row_stride = layout.width as usize * layout.bytes_per_sample;
    plane.num_channels = 1;
    plane.sample_type = layout.sample_type;
    plane.precision = layout.parsed_precision;
    info.buffer = buffer;
    info.buffer_kind = kind;
    info.cuda_stream = std::ptr::null_mut();
    info
}

/// Host memory an image decodes into (or is copied into from the device).
enum Samples {
    Bytes(Vec<u8>),
    Words(Vec<u16>),
}

impl Samples {
    fn for_layout(layout: &Layout) -> Samples {
        if layout.bytes_per_sample == 1 {
            Samples::Bytes(vec![0; layout.pixels()])
        } else {
            Samples::Words(vec![0; layout.pixels()])
        }
    }

    fn as_mut_ptr(&mut self) -> *mut u8 {
        match self {
            Samples::Bytes(v) => v.as_mut_ptr(),
            Samples::Words(v) => v.as_mut_ptr().cast(),
        }
    }

    fn into_words(self) -> Vec<u16> {
        match self {
            Samples::Bytes(v) => v.into_iter().map(u16::from).collect(),
            Samples::Words(v) => v,
        }
    }
}

/// An image on its way through the batch.
struct Pending {
    /// Its position in the caller's slice.
    index: usize,
    stream: ffi::CodeStream,
    parsed: Box<ImageInfo>,
    layout: Layout,
    /// Offset in the device arena (device output).
    offset: usize,
    /// Host buffer (host output), or the destination of the copy back.
    host: Option<Samples>,
    image: ffi::Image,
}

/// Every handle created in a batch, destroyed on every exit path: future
/// first, then images, then code streams.
struct Handles<'a> {
    api: &'a Api,
    streams: Vec<ffi::CodeStream>,
    images: Vec<ffi::Image>,
    future: ffi::Future,
}

impl Drop for Handles<'_> {
    fn drop(&mut self) {
        // SAFETY: each handle was returned by its create call and is
        // destroyed exactly once, here.
        unsafe {
            if !self.future.is_null() {
                (self.api.future_destroy)(self.future);
            }
            for &image in &self.images {
                (self.api.image_destroy)(image);
            }
            for &stream in &self.streams {
                (self.api.code_stream_destroy)(stream);
            }
        }
    }
}

impl Batch<'_> {
    pub(crate) fn run(
        &self,
        state: &mut State,
        streams: &[&[u8]],
        max_pixels: u64,
    ) -> Vec<Result<Decoded, Error>> {
        let mark = self.log.mark();
        let mut results: Vec<Option<Result<Decoded, Error>>> = vec![None; streams.len()];
        let mut handles = Handles {
            api: self.api,
            streams: Vec::with_capacity(streams.len()),
            images: Vec::with_capacity(streams.len()),
            future: std::ptr::null_mut(),
        };

        let mut pending = Vec::with_capacity(streams.len());
        for (index, bytes) in streams.iter().enumerate() {
            match self.parse(bytes, max_pixels, &mut handles) {
                Ok((stream, parsed, layout)) => pending.push(Pending {
                    index,
                    stream,
                    parsed,
                    layout,
                    offset: 0,
                    host: None,
                    image: std::ptr::null_mut(),
                }),
                Err(e) => results[index] = Some(Err(e)),
            }
        }

        let device_base = match self.place(state, &mut pending) {
            Ok(base) => base,
            Err(e) => {
                fail_all(&mut results, &pending, &e);
                return finish(results);
            }
        };

        pending.retain_mut(|p| match self.create_image(p, device_base, &mut handles) {
            Ok(()) => true,
            Err(e) => {
                results[p.index] = Some(Err(e));
                false
            }
        });

        if !pending.is_empty() {
            match self.decode(state, &pending, &mut handles, mark) {
                Ok(statuses) => {
                    for (p, status) in pending.into_iter().zip(statuses) {
                        let index = p.index;
                        results[index] = Some(self.collect(p, status, device_base, mark));
                    }
                }
                Err(e) => fail_all(&mut results, &pending, &e),
            }
        }
        drop(handles);
        finish(results)
    }

    /// Step 1 for one stream.
    fn parse(
        &self,
        bytes: &[u8],
        max_pixels: u64,
        handles: &mut Handles<'_>,
    ) -> Result<(ffi::CodeStream, Box<ImageInfo>, Layout), Error> {
        if bytes.is_empty() {
            return Err(Error::Empty);
        }
        let mut stream: ffi::CodeStream = std::ptr::null_mut();
        // SAFETY: `bytes` outlives the batch (borrowed for the whole call);
        // the handle starts null, so a new code stream is created.
        let status = Status(unsafe {
            (self.api.code_stream_create_from_host_mem)(
                self.instance,
                &mut stream,
                bytes.as_ptr(),
                bytes.len(),
                std::ptr::null(),
            )
        });
        if !stream.is_null() {
            handles.streams.push(stream);
        }
        if !status.is_success() || stream.is_null() {
            return Err(Error::Call {
                call: "nvimgcodecCodeStreamCreateFromHostMem",
                status,
                detail: String::new(),
            });
        }
        let mut parsed = Box::new(ImageInfo::empty());
        // SAFETY: a live code stream and a correctly headed out-struct.
        let status = Status(unsafe { (self.api.code_stream_get_image_info)(stream, &mut *parsed) });
        if !status.is_success() {
            return Err(Error::Call {
                call: "nvimgcodecCodeStreamGetImageInfo",
                status,
                detail: String::new(),
            });
        }
        let layout = layout_of(&parsed, max_pixels)?;
        Ok((stream, parsed, layout))
    }

    /// Gives each pending image its buffer: an aligned offset in the device
    /// arena (grown to fit the batch), or a host allocation.
    fn place(&self, state: &mut State, pending: &mut [Pending]) -> Result<DevicePtr, Error> {
        match (self.output, self.cuda) {
            (Output::Host, _) => {
                for p in pending.iter_mut() {
                    p.host = Some(Samples::for_layout(&p.layout));
                }
                Ok(0)
            }
            (Output::Device, Some(cuda)) => {
                let mut total = 0usize;
                for p in pending.iter_mut() {
                    p.offset = total;
                    total += p.layout.bytes().div_ceil(ARENA_ALIGN) * ARENA_ALIGN;
                }
                if pending.is_empty() {
                    return Ok(0);
                }
                state.arena.reserve(cuda, total)
            }
            (Output::Device, None) => Err(Error::Config("device output without a CUDA driver")),
        }
    }

    /// Step 2 for one image.
    fn create_image(
        &self,
        p: &mut Pending,
        device_base: DevicePtr,
        handles: &mut Handles<'_>,
    ) -> Result<(), Error> {
        let (buffer, kind) = match &mut p.host {
            Some(samples) => (
                samples.as_mut_ptr().cast(),
                ffi::IMAGE_BUFFER_KIND_STRIDED_HOST,
            ),
            None => (
                (device_base + p.offset as u64) as usize as *mut std::ffi::c_void,
                ffi::IMAGE_BUFFER_KIND_STRIDED_DEVICE,
            ),
        };
        let info = output_info(&p.parsed, &p.layout, buffer, kind);
        let mut image: ffi::Image = std::ptr::null_mut();
        // SAFETY: `info` describes a buffer of exactly layout.bytes() that
        // stays allocated until the batch ends; the handle starts null.
        let status = Status(unsafe { (self.api.image_create)(self.instance, &mut image, &info) });
        if !image.is_null() {
            handles.images.push(image);
        }
        if !status.is_success() || image.is_null() {
            return Err(Error::Call {
                call: "nvimgcodecImageCreate",
                status,
                detail: String::new(),
            });
        }
        p.image = image;
        Ok(())
    }

    /// Step 3 (and the device synchronisation of step 4): one status per
    /// pending image, in order.
    fn decode(
        &self,
        state: &State,
        pending: &[Pending],
        handles: &mut Handles<'_>,
        mark: u64,
    ) -> Result<Vec<ProcessingStatus>, Error> {
        let streams: Vec<ffi::CodeStream> = pending.iter().map(|p| p.stream).collect();
        let images: Vec<ffi::Image> = pending.iter().map(|p| p.image).collect();
        let count = c_int::try_from(pending.len())
            .map_err(|_| Error::Config("batch larger than i32::MAX images"))?;
        let params = ffi::DecodeParams {
            struct_type: ffi::STRUCTURE_TYPE_DECODE_PARAMS,
            struct_size: size_of::<ffi::DecodeParams>(),
            struct_next: std::ptr::null_mut(),
            apply_exif_orientation: 0,
        };
        let call_error = |call: &'static str, status: Status| Error::Call {
            call,
            status,
            detail: self.log.problems_since(mark),
        };
        // SAFETY: `count` live streams and images; the future handle is
        // destroyed by `handles`.
        let status = Status(unsafe {
            (self.api.decoder_decode)(
                state.decoder,
                streams.as_ptr(),
                images.as_ptr(),
                count,
                &params,
                &mut handles.future,
            )
        });
        if !status.is_success() || handles.future.is_null() {
            return Err(call_error("nvimgcodecDecoderDecode", status));
        }
        // SAFETY: a live future.
        let status = Status(unsafe { (self.api.future_wait_for_all)(handles.future) });
        // The device may still be writing even when the host side failed:
        // wait for it before the arena can be reused or freed.
        let synced = match (self.output, self.cuda) {
            (Output::Device, Some(cuda)) => cuda.synchronize(),
            _ => Ok(()),
        };
        if !status.is_success() {
            return Err(call_error("nvimgcodecFutureWaitForAll", status));
        }
        synced?;
        let mut bits = vec![0 as ffi::ProcessingStatusBits; pending.len()];
        let mut size = 0usize;
        // SAFETY: room for one status per image of the batch, which is what
        // the library writes (it reports the count in `size`).
        let status = Status(unsafe {
            (self.api.future_get_processing_status)(handles.future, bits.as_mut_ptr(), &mut size)
        });
        if !status.is_success() {
            return Err(call_error("nvimgcodecFutureGetProcessingStatus", status));
        }
        if size != pending.len() {
            return Err(call_error(
                "nvimgcodecFutureGetProcessingStatus (wrong count)",
                Status(ffi::STATUS_SUCCESS),
            ));
        }
        Ok(bits.into_iter().map(ProcessingStatus).collect())
    }

    /// Step 4 for one image: its samples, or why it failed.
    fn collect(
        &self,
        p: Pending,
        status: ProcessingStatus,
        device_base: DevicePtr,
        mark: u64,
    ) -> Result<Decoded, Error> {
        if !status.is_success() {
            return Err(Error::Processing {
                status,
                detail: self.log.problems_since(mark),
            });
        }
        let samples = match (p.host, self.cuda) {
            (Some(samples), _) => samples,
            (None, Some(cuda)) => {
                let mut samples = Samples::for_layout(&p.layout);
                // SAFETY: the destination holds layout.bytes(); the source
                // range lies inside the arena (placed by `place`), and the
                // device was synchronised after the decode.
                unsafe {
                    cuda.copy_to_host(
                        samples.as_mut_ptr(),
                        device_base + p.offset as u64,
                        p.layout.bytes(),
                    )?
                };
                samples
            }
            (None, None) => return Err(Error::Config("device output without a CUDA driver")),
        };
        Ok(Decoded {
            width: p.layout.width,
            height: p.layout.height,
            precision: p.layout.precision,
            signed: p.layout.signed,
            samples: samples.into_words(),
        })
    }
}

fn fail_all(results: &mut [Option<Result<Decoded, Error>>], pending: &[Pending], error: &Error) {
    for p in pending {
        results[p.index] = Some(Err(error.clone()));
    }
}

fn finish(results: Vec<Option<Result<Decoded, Error>>>) -> Vec<Result<Decoded, Error>> {
    results
        .into_iter()
        .map(|r| r.unwrap_or(Err(Error::Config("image left without a result"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(planes: u32, channels: u32, w: u32, h: u32, ty: i32, precision: u8) -> ImageInfo {
        let mut info = ImageInfo::empty();
        info.num_planes = planes;
        for p in 0..planes as usize {
            info.plane_info[p].width = w;
            info.plane_info[p].height = h;
            info.plane_info[p].num_channels = channels;
            info.plane_info[p].sample_type = ty;
            info.plane_info[p].precision = precision;
        }
        for (dst, src) in info.codec_name.iter_mut().zip(b"jpeg2k") {
            *dst = *src as std::ffi::c_char;
        }
        info
    }

    #[test]
    fn twelve_bit_unsigned_keeps_its_precision_in_a_u16() {
        let l = layout_of(&parsed(1, 1, 3, 2, ffi::SAMPLE_DATA_TYPE_UINT16, 12), 6).unwrap();
        assert_eq!(
            (l.width, l.height, l.precision, l.signed),
            (3, 2, 12, false)
        );
        assert_eq!(l.bytes(), 12);
        assert_eq!(l.parsed_precision, 12);
    }

    #[test]
    fn signed_sixteen_bit_is_returned_as_its_bits() {
        let l = layout_of(&parsed(1, 1, 4, 4, ffi::SAMPLE_DATA_TYPE_INT16, 0), 16).unwrap();
        assert!(l.signed);
        assert_eq!(l.precision, 16);
    }

    #[test]
    fn colour_and_signed_eight_bit_and_oversized_are_refused() {
        let colour = layout_of(&parsed(3, 1, 4, 4, ffi::SAMPLE_DATA_TYPE_UINT8, 8), 100);
        assert!(matches!(
            colour,
            Err(Error::MultiComponent { components: 3, ref codec }) if codec == "jpeg2k"
        ));
        let interleaved = layout_of(&parsed(1, 3, 4, 4, ffi::SAMPLE_DATA_TYPE_UINT8, 8), 100);
        assert!(matches!(
            interleaved,
            Err(Error::MultiComponent { components: 3, .. })
        ));
        let int8 = layout_of(&parsed(1, 1, 4, 4, ffi::SAMPLE_DATA_TYPE_INT8, 8), 100);
        assert!(matches!(int8, Err(Error::UnsupportedSamples { .. })));
        let big = layout_of(&parsed(1, 1, 4, 4, ffi::SAMPLE_DATA_TYPE_UINT8, 8), 15);
        assert!(matches!(big, Err(Error::TooLarge { max_pixels: 15, .. })));
        let empty = layout_of(&parsed(1, 1, 0, 4, ffi::SAMPLE_DATA_TYPE_UINT8, 8), 15);
        assert!(matches!(empty, Err(Error::NoPixels { .. })));
        let wide = layout_of(&parsed(1, 1, 4, 4, ffi::SAMPLE_DATA_TYPE_UINT8, 9), 100);
        assert!(matches!(wide, Err(Error::UnsupportedSamples { .. })));
    }

    #[test]
    fn the_output_image_asks_for_no_conversion() {
        let mut p = parsed(1, 1, 5, 3, ffi::SAMPLE_DATA_TYPE_UINT16, 12);
        p.color_spec = 0; // a bare J2K codestream parses as UNKNOWN
        p.sample_format = ffi::SAMPLEFORMAT_P_Y;
        p.orientation.rotated = 90;
        let l = layout_of(&p, 100).unwrap();
        let out = output_info(
            &p,
            &l,
            0x1000 as *mut _,
            ffi::IMAGE_BUFFER_KIND_STRIDED_DEVICE,
        );
        assert_eq!(out.color_spec, ffi::COLORSPEC_GRAY);
        assert_eq!(out.sample_format, ffi::SAMPLEFORMAT_P_Y);
        assert_eq!(out.chroma_subsampling, ffi::SAMPLING_GRAY);
        assert_eq!(out.orientation.rotated, 0);
        assert_eq!(out.num_planes, 1);
        let plane = &out.plane_info[0];
        assert_eq!((plane.width, plane.height, plane.row_stride), (5, 3, 10));
        assert_eq!(plane.sample_type, ffi::SAMPLE_DATA_TYPE_UINT16);
        assert_eq!(plane.precision, 12);
        assert_eq!(plane.num_channels, 1);
        assert_eq!(out.buffer as usize, 0x1000);
        assert_eq!(out.buffer_kind, ffi::IMAGE_BUFFER_KIND_STRIDED_DEVICE);
        assert!(out.cuda_stream.is_null());
        assert_eq!(out.codec_name(), "jpeg2k");
    }

    #[test]
    fn eight_bit_samples_widen_without_scaling() {
        let samples = Samples::Bytes(vec![0, 1, 255]);
        assert_eq!(samples.into_words(), vec![0, 1, 255]);
    }
}
