//! Is this an analyzable frontal chest radiograph?
//!
//! The gate looks only at the header and the image size. Saying "no" is a
//! result, not an error: the image still goes on the worklist, for a human.

use dicom_dictionary_std::uids;
use serde::Serialize;

use super::meta::RadiographMeta;
use super::pixels::PixelModule;
use super::IngestLimits;

/// The gate's verdict.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Assessment {
    /// The AI may read this image.
    pub analyzable: bool,
    /// Why not, when not analyzable.
    pub reason: Option<NotAnalyzable>,
    /// Things a reader should know even when analyzable (e.g. an absent View Position).
    pub notes: Vec<String>,
}

/// Why an image is not for the AI.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum NotAnalyzable {
    /// Not a projection radiograph (Modality not CR/DX and not a Digital X-Ray SOP class).
    NotRadiograph {
        /// Modality as sent.
        modality: Option<String>,
        /// SOP Class UID as sent.
        sop_class_uid: String,
    },
    /// A lateral view.
    LateralView {
        /// View Position as sent.
        view_position: String,
    },
    /// A view other than PA, AP or lateral (decubitus, oblique, …).
    OtherView {
        /// View Position as sent.
        view_position: String,
    },
    /// Body Part Examined names something other than the chest.
    NotChest {
        /// Body Part Examined as sent.
        body_part: String,
    },
    /// Too small, or too elongated, to be a chest film.
    ImplausibleSize {
        /// Rows.
        rows: u32,
        /// Columns.
        columns: u32,
    },
}

impl NotAnalyzable {
    /// A short machine-readable code, e.g. `lateral_view`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotRadiograph { .. } => "not_radiograph",
            Self::LateralView { .. } => "lateral_view",
            Self::OtherView { .. } => "other_view",
            Self::NotChest { .. } => "not_chest",
            Self::ImplausibleSize { .. } => "implausible_size",
        }
    }
}

impl std::fmt::Display for NotAnalyzable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotRadiograph {
                modality,
                sop_class_uid,
            } => write!(
                f,
                "not a projection radiograph: modality {}, SOP class {sop_class_uid}",
                modality.as_deref().unwrap_or("absent")
            ),
            Self::LateralView { view_position } => {
                write!(
                    f,
                    "lateral view ({view_position}): the models read frontal (PA/AP) chest films"
                )
            }
            Self::OtherView { view_position } => {
                write!(
                    f,
                    "view position {view_position} is not a frontal (PA/AP) chest film"
                )
            }
            Self::NotChest { body_part } => {
                write!(f, "body part examined is {body_part}, not the chest")
            }
            Self::ImplausibleSize { rows, columns } => {
                write!(
                    f,
                    "{columns}x{rows} pixels is not the size of a chest radiograph"
                )
            }
        }
    }
}

/// SOP classes of projection X-ray that may hold a chest film.
const XRAY_SOP_CLASSES: [&str; 3] = [
    uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
    uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
];

/// Chests are longer than wide or the other way round, but not by 3 to 1.
const MAX_ASPECT: f64 = 3.0;

/// Decides whether the image is an analyzable frontal chest radiograph.
pub(crate) fn assess(
    meta: &RadiographMeta,
    module: &PixelModule,
    limits: &IngestLimits,
) -> Assessment {
    let mut notes = Vec::new();
    let verdict = check(meta, module, limits, &mut notes);
    Assessment {
        analyzable: verdict.is_none(),
        reason: verdict,
        notes,
    }
}

fn check(
    meta: &RadiographMeta,
    module: &PixelModule,
    limits: &IngestLimits,
    notes: &mut Vec<String>,
) -> Option<NotAnalyzable> {
    let modality = meta.modality.as_deref().map(str::to_ascii_uppercase);
    let xray_modality = matches!(modality.as_deref(), Some("CR" | "DX"));
    let xray_class = XRAY_SOP_CLASSES.contains(&meta.sop_class_uid.as_str());
    if !xray_modality && !xray_class {
        return Some(NotAnalyzable::NotRadiograph {
            modality: meta.modality.clone(),
            sop_class_uid: meta.sop_class_uid.clone(),
        });
    }
    match meta.view_position.as_deref().map(str::to_ascii_uppercase) {
        None => notes.push("View Position absent: assumed frontal".into()),
        Some(v) if v == "PA" || v == "AP" => {}
        Some(v) if matches!(v.as_str(), "LL" | "RL" | "LAT" | "LATERAL") => {
            return Some(NotAnalyzable::LateralView { view_position: v })
        }
        Some(v) => return Some(NotAnalyzable::OtherView { view_position: v }),
    }
    if let Some(part) = &meta.body_part_examined {
        let upper = part.to_ascii_uppercase();
        if !matches!(upper.as_str(), "CHEST" | "THORAX" | "LUNG" | "LUNGS") {
            return Some(NotAnalyzable::NotChest {
                body_part: part.clone(),
            });
        }
    }
    let (rows, columns) = (module.rows, module.columns);
    let aspect = f64::from(rows.max(columns)) / f64::from(rows.min(columns).max(1));
    if rows.min(columns) < limits.min_side || aspect > MAX_ASPECT {
        return Some(NotAnalyzable::ImplausibleSize { rows, columns });
    }
    if meta.pixel_spacing_mm.is_none() {
        notes.push("no usable pixel spacing: sizes in millimetres are unknown".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chest() -> (RadiographMeta, PixelModule) {
        let meta = RadiographMeta {
            sop_class_uid: uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE.into(),
            modality: Some("CR".into()),
            view_position: Some("PA".into()),
            body_part_examined: Some("CHEST".into()),
            pixel_spacing_mm: Some([0.15, 0.15]),
            ..Default::default()
        };
        let module = PixelModule {
            rows: 2000,
            columns: 1800,
            samples_per_pixel: 1,
            photometric: "MONOCHROME1".into(),
            bits_allocated: 16,
            bits_stored: 12,
            high_bit: 11,
            signed: false,
            frames: 1,
        };
        (meta, module)
    }

    fn verdict(meta: &RadiographMeta, module: &PixelModule) -> Option<&'static str> {
        assess(meta, module, &IngestLimits::default())
            .reason
            .map(|r| r.code())
    }

    #[test]
    fn frontal_chest_cr_is_analyzable() {
        let (meta, module) = chest();
        assert_eq!(verdict(&meta, &module), None);
    }

    #[test]
    fn lateral_is_not_analyzable() {
        let (mut meta, module) = chest();
        meta.view_position = Some("LL".into());
        assert_eq!(verdict(&meta, &module), Some("lateral_view"));
    }

    #[test]
    fn ct_is_not_a_radiograph() {
        let (mut meta, module) = chest();
        meta.modality = Some("CT".into());
        meta.sop_class_uid = uids::CT_IMAGE_STORAGE.into();
        assert_eq!(verdict(&meta, &module), Some("not_radiograph"));
    }

    #[test]
    fn a_hand_is_not_a_chest() {
        let (mut meta, module) = chest();
        meta.body_part_examined = Some("HAND".into());
        assert_eq!(verdict(&meta, &module), Some("not_chest"));
    }

    #[test]
    fn thumbnails_and_strips_are_implausible() {
        let (meta, mut module) = chest();
        module.rows = 128;
        module.columns = 128;
        assert_eq!(verdict(&meta, &module), Some("implausible_size"));
        module.rows = 4000;
        module.columns = 1000;
        assert_eq!(verdict(&meta, &module), Some("implausible_size"));
    }

    #[test]
    fn missing_view_position_is_a_note_not_a_rejection() {
        let (mut meta, module) = chest();
        meta.view_position = None;
        let a = assess(&meta, &module, &IngestLimits::default());
        assert!(a.analyzable);
        assert!(a.notes.iter().any(|n| n.contains("View Position")));
    }
}
