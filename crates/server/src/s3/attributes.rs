//! GetObjectAttributes: what a HEAD tells of a version plus its part layout, in one XML answer, for the attributes
//! the request names. An SSE-C object's attributes need its customer key, as a HEAD does.

use coffer_sse::authorize_read;
use coffer_store::ObjectMeta;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::etag;
use super::objects::head_version;
use crate::checksum::{checksum_type, set_checksum_fields, ChecksumFields};
use crate::encryption::{sse_error, sse_headers, stored_encryption, transport};
use crate::listing::page_size;
use crate::service::AppState;

pub async fn get_object_attributes(
    state: &AppState,
    req: S3Request<GetObjectAttributesInput>,
) -> S3Result<S3Response<GetObjectAttributesOutput>> {
    let customer_key = sse_headers(&req.headers)?.for_read(&transport(state, &req.extensions)).map_err(sse_error)?;
    let input = req.input;
    let names = requested_attributes(&input.object_attributes)?;
    let wanted = |name: &str| names.contains(&name);
    let meta = head_version(state, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    let encryption = stored_encryption(meta.encryption.as_ref())?;
    authorize_read(encryption.as_ref(), customer_key.as_ref()).map_err(sse_error)?;

    let mut output = GetObjectAttributesOutput {
        last_modified: Some(Timestamp::from(meta.last_modified)),
        version_id: meta.version_id.clone(),
        ..Default::default()
    };
    if wanted(ObjectAttributes::ETAG) {
        output.e_tag = Some(etag(&meta.etag));
    }
    if wanted(ObjectAttributes::OBJECT_SIZE) {
        output.object_size = i64::try_from(meta.size).ok();
    }
    if wanted(ObjectAttributes::STORAGE_CLASS) {
        output.storage_class = Some(StorageClass::from_static(StorageClass::STANDARD));
    }
    if wanted(ObjectAttributes::CHECKSUM) {
        output.checksum = meta.checksum.as_ref().map(|stored| {
            let mut checksum = Checksum { checksum_type: Some(checksum_type(stored.kind)), ..Default::default() };
            set_checksum_fields!(checksum, ChecksumFields::from_stored(Some(stored)));
            checksum
        });
    }
    if wanted(ObjectAttributes::OBJECT_PARTS) {
        output.object_parts = object_parts(&meta, input.part_number_marker, input.max_parts)?;
    }
    Ok(S3Response::new(output))
}

/// The attribute names of `x-amz-object-attributes`: one comma-separated header (as SDKs send it) or several.
fn requested_attributes(list: &[ObjectAttributes]) -> S3Result<Vec<&str>> {
    const KNOWN: [&str; 5] = [
        ObjectAttributes::ETAG,
        ObjectAttributes::CHECKSUM,
        ObjectAttributes::OBJECT_PARTS,
        ObjectAttributes::STORAGE_CLASS,
        ObjectAttributes::OBJECT_SIZE,
    ];
    let names: Vec<&str> = list
        .iter()
        .flat_map(|value| value.as_str().split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect();
    if names.is_empty() {
        return Err(s3_error!(
            InvalidArgument,
            "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty"
        ));
    }
    match names.iter().find(|name| !KNOWN.contains(name)) {
        Some(unknown) => Err(s3_error!(InvalidArgument, "Invalid attribute name specified: {unknown}")),
        None => Ok(names),
    }
}

/// The parts of a multipart object after `marker`, at most `max_parts` (S3 reports none for a single PUT).
fn object_parts(
    meta: &ObjectMeta,
    marker: Option<i32>,
    max_parts: Option<i32>,
) -> S3Result<Option<GetObjectAttributesParts>> {
    if !meta.etag.contains('-') {
        return Ok(None);
    }
    let max_parts = page_size(max_parts, "max-parts")?;
    let marker = u32::try_from(marker.unwrap_or(0))
        .map_err(|_| s3_error!(InvalidArgument, "part-number-marker must be a non-negative integer."))?;
    let mut after_marker = meta.parts.iter().filter(|part| part.number > marker).peekable();
    let mut parts = Vec::new();
    while parts.len() < max_parts {
        let Some(part) = after_marker.next() else { break };
        let mut entry = ObjectPart {
            part_number: i32::try_from(part.number).ok(),
            size: i64::try_from(part.size).ok(),
            ..Default::default()
        };
        set_checksum_fields!(entry, ChecksumFields::from_stored(part.checksum.as_ref()));
        parts.push(entry);
    }
    let is_truncated = after_marker.peek().is_some();
    Ok(Some(GetObjectAttributesParts {
        total_parts_count: i32::try_from(meta.parts.len()).ok(),
        part_number_marker: i32::try_from(marker).ok(),
        next_part_number_marker: parts.last().and_then(|part| part.part_number).filter(|_| is_truncated),
        max_parts: i32::try_from(max_parts).ok(),
        is_truncated: Some(is_truncated),
        parts: Some(parts),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_come_comma_separated_or_one_per_header() {
        let one = [ObjectAttributes::from("ETag, ObjectSize".to_owned())];
        assert_eq!(requested_attributes(&one).unwrap(), ["ETag", "ObjectSize"]);
        let several = [ObjectAttributes::from("Checksum".to_owned()), ObjectAttributes::from("ObjectParts".to_owned())];
        assert_eq!(requested_attributes(&several).unwrap(), ["Checksum", "ObjectParts"]);
        assert!(requested_attributes(&[ObjectAttributes::from(" , ".to_owned())]).is_err());
        assert!(requested_attributes(&[ObjectAttributes::from("ETag,Owner".to_owned())]).is_err());
    }
}
