//! Protocol edge cases against the real server over HTTP with SigV4-signed requests: integrity checks, ranges,
//! conditional requests, multipart validation, copies, listings, reserved names and authentication.

mod common;

use common::{aws_chunked, base64, crc32_b64, data, encode_key, md5_hex, Payload, TestServer, USER_KEY, USER_SECRET};

const MIN_PART: u64 = 1024;

async fn server_with_bucket(bucket: &str) -> (TestServer, common::Client) {
    let server = TestServer::start(MIN_PART).await;
    let client = server.client();
    client.create_bucket(bucket).await;
    (server, client)
}

// ---------------------------------------------------------------- objects and integrity

#[tokio::test]
async fn put_get_round_trips_body_headers_and_metadata() {
    let (_server, client) = server_with_bucket("round-trip").await;
    let body = data(70_000, 1);
    let reply = client
        .put(
            "/round-trip/dir/file.bin",
            &[
                ("content-type", "application/x-test"),
                ("cache-control", "max-age=60"),
                ("content-disposition", "attachment; filename=\"f.bin\""),
                ("content-language", "de"),
                ("expires", "Wed, 21 Oct 2037 07:28:00 GMT"),
                ("x-amz-meta-colour", "blue"),
                ("x-amz-meta-Mixed-Case", "v"),
            ],
            &body,
        )
        .await;
    reply.expect(200, None);
    let expected_etag = format!("\"{}\"", md5_hex(&body));
    assert_eq!(reply.header("etag"), Some(expected_etag.as_str()));
    assert!(reply.header("x-amz-request-id").is_some_and(|id| !id.is_empty()));

    let got = client.get("/round-trip/dir/file.bin", &[]).await;
    got.expect(200, None);
    assert_eq!(got.body, body);
    assert_eq!(got.header("etag"), Some(expected_etag.as_str()));
    assert_eq!(got.header("content-type"), Some("application/x-test"));
    assert_eq!(got.header("cache-control"), Some("max-age=60"));
    assert_eq!(got.header("content-disposition"), Some("attachment; filename=\"f.bin\""));
    assert_eq!(got.header("content-language"), Some("de"));
    assert_eq!(got.header("expires"), Some("Wed, 21 Oct 2037 07:28:00 GMT"));
    assert_eq!(got.header("x-amz-meta-colour"), Some("blue"));
    assert_eq!(got.header("x-amz-meta-mixed-case"), Some("v"));
    assert_eq!(got.header("content-length"), Some("70000"));
    assert_eq!(got.header("accept-ranges"), Some("bytes"));

    let head = client.head("/round-trip/dir/file.bin", &[]).await;
    head.expect(200, None);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some("70000"));
    assert_eq!(head.header("x-amz-meta-colour"), Some("blue"));

    // No Content-Type given: S3's default.
    client.put_object("round-trip", "plain", b"x").await;
    let plain = client.head("/round-trip/plain", &[]).await;
    assert_eq!(plain.header("content-type"), Some("binary/octet-stream"));
}

#[tokio::test]
async fn empty_objects_work() {
    let (_server, client) = server_with_bucket("empty").await;
    let reply = client.put_object("empty", "zero", b"").await;
    assert_eq!(reply.header("etag"), Some("\"d41d8cd98f00b204e9800998ecf8427e\""));
    let got = client.get("/empty/zero", &[]).await;
    got.expect(200, None);
    assert!(got.body.is_empty());
    assert_eq!(got.header("content-length"), Some("0"));
}

#[tokio::test]
async fn missing_objects_and_buckets() {
    let (_server, client) = server_with_bucket("present").await;
    client.get("/present/nope", &[]).await.expect(404, Some("NoSuchKey"));
    client.get("/absent-bucket/nope", &[]).await.expect(404, Some("NoSuchBucket"));
    client.put("/absent-bucket/k", &[], b"x").await.expect(404, Some("NoSuchBucket"));
    let head = client.head("/present/nope", &[]).await;
    head.expect(404, None);
    assert!(head.header("x-amz-request-id").is_some());
    // Deleting a missing key succeeds, as in S3.
    client.delete("/present/nope").await.expect(204, None);
}

#[tokio::test]
async fn checksum_mismatch_is_bad_digest_and_stores_nothing() {
    let (server, client) = server_with_bucket("digests").await;
    let original = data(5000, 7);
    client.put_object("digests", "key", &original).await;

    let replacement = data(5000, 8);
    let wrong = crc32_b64(b"something else");
    let reply = client.put("/digests/key", &[("x-amz-checksum-crc32", &wrong)], &replacement).await;
    reply.expect(400, Some("BadDigest"));
    // The previous version is untouched and nothing is left staged.
    assert_eq!(client.get("/digests/key", &[]).await.body, original);
    assert!(server.staged_files().is_empty(), "staged leftovers: {:?}", server.staged_files());

    let reply = client.put("/digests/new", &[("x-amz-checksum-crc32", &wrong)], &replacement).await;
    reply.expect(400, Some("BadDigest"));
    client.head("/digests/new", &[]).await.expect(404, None);
    assert!(server.staged_files().is_empty());
}

#[tokio::test]
async fn every_checksum_algorithm_is_verified_stored_and_returned() {
    use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
    let (_server, client) = server_with_bucket("algorithms").await;
    let body = data(3000, 3);
    let cases = [
        ("x-amz-checksum-crc32", base64(&Crc32::checksum(&body))),
        ("x-amz-checksum-crc32c", base64(&Crc32c::checksum(&body))),
        ("x-amz-checksum-crc64nvme", base64(&Crc64Nvme::checksum(&body))),
        ("x-amz-checksum-sha1", base64(&Sha1::checksum(&body))),
        ("x-amz-checksum-sha256", base64(&Sha256::checksum(&body))),
    ];
    for (header, value) in &cases {
        let path = format!("/algorithms/{header}");
        let reply = client.put(&path, &[(header, value.as_str())], &body).await;
        reply.expect(200, None);
        assert_eq!(reply.header(header), Some(value.as_str()), "PUT echoes {header}");

        let head = client.head(&path, &[("x-amz-checksum-mode", "ENABLED")]).await;
        assert_eq!(head.header(header), Some(value.as_str()));
        assert_eq!(head.header("x-amz-checksum-type"), Some("FULL_OBJECT"));
        let get = client.get(&path, &[("x-amz-checksum-mode", "ENABLED")]).await;
        assert_eq!(get.header(header), Some(value.as_str()));
        // Without checksum mode, no checksum headers.
        assert_eq!(client.head(&path, &[]).await.header(header), None);

        let mut corrupted = body.clone();
        corrupted[1234] ^= 1;
        let reply = client.put(&path, &[(header, value.as_str())], &corrupted).await;
        reply.expect(400, Some("BadDigest"));
    }

    // Malformed values and ambiguous declarations are rejected before anything is stored.
    let reply = client.put("/algorithms/x", &[("x-amz-checksum-crc32", "AAA")], &body).await;
    reply.expect(400, Some("InvalidRequest"));
    let crc = crc32_b64(&body);
    let sha = cases[4].1.clone();
    let reply =
        client.put("/algorithms/x", &[("x-amz-checksum-crc32", &crc), ("x-amz-checksum-sha256", &sha)], &body).await;
    reply.expect(400, Some("InvalidRequest"));
    client.head("/algorithms/x", &[]).await.expect(404, None);
}

#[tokio::test]
async fn content_md5_is_checked() {
    use s3s::crypto::{Checksum as _, Md5};
    let (_server, client) = server_with_bucket("md5").await;
    let body = data(1000, 9);
    let good = base64(&Md5::checksum(&body));
    client.put("/md5/ok", &[("content-md5", &good)], &body).await.expect(200, None);

    let other = base64(&Md5::checksum(b"other"));
    client.put("/md5/bad", &[("content-md5", &other)], &body).await.expect(400, Some("BadDigest"));
    client.put("/md5/bad", &[("content-md5", "not-an-md5")], &body).await.expect(400, Some("InvalidDigest"));
    client.put("/md5/bad", &[("content-md5", &base64(b"short"))], &body).await.expect(400, Some("InvalidDigest"));
    client.head("/md5/bad", &[]).await.expect(404, None);
}

#[tokio::test]
async fn streaming_trailer_checksums_are_verified() {
    let (server, client) = server_with_bucket("trailers").await;
    let body = data(200_000, 4);
    let good = crc32_b64(&body);
    let decoded_len = body.len().to_string();
    let headers = |len: &str| {
        vec![
            ("content-encoding", "aws-chunked"),
            ("x-amz-trailer", "x-amz-checksum-crc32"),
            ("x-amz-decoded-content-length", len),
        ]
        .into_iter()
        .map(|(n, v)| (n, v.to_owned()))
        .collect::<Vec<_>>()
    };
    let owned = headers(&decoded_len);
    let refs: Vec<(&str, &str)> = owned.iter().map(|(n, v)| (*n, v.as_str())).collect();

    let encoded = aws_chunked(&body, 65_536, &[("x-amz-checksum-crc32", &good)]);
    let reply = client.send("PUT", "/trailers/good", &refs, Payload::StreamingUnsignedTrailer(&encoded)).await;
    reply.expect(200, None);
    let got = client.get("/trailers/good", &[("x-amz-checksum-mode", "ENABLED")]).await;
    assert_eq!(got.body, body);
    assert_eq!(got.header("x-amz-checksum-crc32"), Some(good.as_str()));
    // The transfer encoding is not part of the object.
    assert_eq!(got.header("content-encoding"), None);

    let wrong = crc32_b64(b"not the body");
    let encoded = aws_chunked(&body, 65_536, &[("x-amz-checksum-crc32", &wrong)]);
    let reply = client.send("PUT", "/trailers/bad", &refs, Payload::StreamingUnsignedTrailer(&encoded)).await;
    reply.expect(400, Some("BadDigest"));
    client.head("/trailers/bad", &[]).await.expect(404, None);

    // A declared trailer that never arrives.
    let encoded = aws_chunked(&body, 65_536, &[]);
    let reply = client.send("PUT", "/trailers/missing", &refs, Payload::StreamingUnsignedTrailer(&encoded)).await;
    reply.expect(400, Some("MalformedTrailerError"));
    client.head("/trailers/missing", &[]).await.expect(404, None);
    assert!(server.staged_files().is_empty());
}

#[tokio::test]
async fn body_shorter_than_declared_decoded_length_is_rejected() {
    let (_server, client) = server_with_bucket("short").await;
    let body = data(1000, 5);
    let encoded = aws_chunked(&body, 400, &[("x-amz-checksum-crc32", &crc32_b64(&body))]);
    let headers = [
        ("content-encoding", "aws-chunked"),
        ("x-amz-trailer", "x-amz-checksum-crc32"),
        ("x-amz-decoded-content-length", "2000"),
    ];
    let reply = client.send("PUT", "/short/k", &headers, Payload::StreamingUnsignedTrailer(&encoded)).await;
    reply.expect(400, Some("IncompleteBody"));
    client.head("/short/k", &[]).await.expect(404, None);
}

#[tokio::test]
async fn aws_chunked_body_without_its_final_chunk_is_incomplete() {
    let (server, client) = server_with_bucket("unfinished").await;
    let body = data(1000, 7);
    let crc = crc32_b64(&body);
    let decoded_len = body.len().to_string();
    let headers = [
        ("content-encoding", "aws-chunked"),
        ("x-amz-trailer", "x-amz-checksum-crc32"),
        ("x-amz-decoded-content-length", decoded_len.as_str()),
    ];
    let encoded = aws_chunked(&body, 400, &[("x-amz-checksum-crc32", &crc)]);
    let final_chunk = encoded.windows(5).rposition(|w| w == b"\r\n0\r\n").unwrap() + 2;
    let unfinished = &encoded[..final_chunk];
    let reply = client.send("PUT", "/unfinished/k", &headers, Payload::StreamingUnsignedTrailer(unfinished)).await;
    reply.expect(400, Some("IncompleteBody"));
    client.head("/unfinished/k", &[]).await.expect(404, None);
    let id = create_upload(&client, "/unfinished/mpu", &[]).await;
    let part = format!("/unfinished/mpu?partNumber=1&uploadId={id}");
    let reply = client.send("PUT", &part, &headers, Payload::StreamingUnsignedTrailer(unfinished)).await;
    reply.expect(400, Some("IncompleteBody"));
    assert!(!client.get(&format!("/unfinished/mpu?uploadId={id}"), &[]).await.text().contains("<Part>"));
    assert!(server.staged_files().is_empty());

    let reply = client.send("PUT", "/unfinished/k", &headers, Payload::StreamingUnsignedTrailer(&encoded)).await;
    reply.expect(200, None);
    assert_eq!(client.get("/unfinished/k", &[]).await.body, body);
}

#[tokio::test]
async fn unsigned_payload_with_header_checksum() {
    let (_server, client) = server_with_bucket("unsigned").await;
    let body = data(4096, 6);
    let crc = crc32_b64(&body);
    let reply = client.send("PUT", "/unsigned/k", &[("x-amz-checksum-crc32", &crc)], Payload::Unsigned(&body)).await;
    reply.expect(200, None);
    assert_eq!(client.get("/unsigned/k", &[]).await.body, body);
}

// ---------------------------------------------------------------- ranges

#[tokio::test]
async fn range_requests() {
    let (_server, client) = server_with_bucket("ranges").await;
    let body = data(100, 2);
    client.put_object("ranges", "k", &body).await;

    let cases: [(&str, std::ops::Range<usize>); 6] = [
        ("bytes=0-0", 0..1),
        ("bytes=10-19", 10..20),
        ("bytes=90-", 90..100),
        ("bytes=-7", 93..100),
        ("bytes=95-1000", 95..100),
        ("bytes=-1000", 0..100),
    ];
    for (range, expected) in cases {
        let got = client.get("/ranges/k", &[("range", range)]).await;
        got.expect(206, None);
        assert_eq!(got.body, &body[expected.clone()], "{range}");
        let content_range = format!("bytes {}-{}/100", expected.start, expected.end - 1);
        assert_eq!(got.header("content-range"), Some(content_range.as_str()), "{range}");
        assert_eq!(got.header("content-length"), Some(expected.len().to_string().as_str()));
    }

    for range in ["bytes=100-", "bytes=100-200", "bytes=-0"] {
        let got = client.get("/ranges/k", &[("range", range)]).await;
        got.expect(416, Some("InvalidRange"));
        assert_eq!(got.header("content-range"), Some("bytes */100"), "{range}");
    }

    client.put_object("ranges", "empty", b"").await;
    client.get("/ranges/empty", &[("range", "bytes=0-")]).await.expect(416, Some("InvalidRange"));
}

// ---------------------------------------------------------------- conditional requests

#[tokio::test]
async fn conditional_reads() {
    let (_server, client) = server_with_bucket("conditions").await;
    let reply = client.put_object("conditions", "k", b"conditional body").await;
    let etag = reply.header("etag").unwrap().to_owned();
    let path = "/conditions/k";

    client.get(path, &[("if-match", &etag)]).await.expect(200, None);
    client
        .get(path, &[("if-match", "\"00000000000000000000000000000000\"")])
        .await
        .expect(412, Some("PreconditionFailed"));
    client.head(path, &[("if-match", "\"00000000000000000000000000000000\"")]).await.expect(412, None);

    let not_modified = client.get(path, &[("if-none-match", &etag)]).await;
    not_modified.expect(304, None);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    client.get(path, &[("if-none-match", "\"ffffffffffffffffffffffffffffffff\"")]).await.expect(200, None);

    let future = "Fri, 01 Jan 2100 00:00:00 GMT";
    let past = "Sat, 01 Jan 2000 00:00:00 GMT";
    client.get(path, &[("if-modified-since", future)]).await.expect(304, None);
    client.get(path, &[("if-modified-since", past)]).await.expect(200, None);
    client.get(path, &[("if-unmodified-since", past)]).await.expect(412, Some("PreconditionFailed"));
    client.get(path, &[("if-unmodified-since", future)]).await.expect(200, None);
    // If-Match takes precedence over If-Unmodified-Since.
    client.get(path, &[("if-match", &etag), ("if-unmodified-since", past)]).await.expect(200, None);
}

#[tokio::test]
async fn conditional_writes() {
    let (_server, client) = server_with_bucket("cond-writes").await;
    client.put("/cond-writes/k", &[("if-none-match", "*")], b"first").await.expect(200, None);
    client.put("/cond-writes/k", &[("if-none-match", "*")], b"second").await.expect(412, Some("PreconditionFailed"));
    assert_eq!(client.get("/cond-writes/k", &[]).await.body, b"first");
    let etag = format!("\"{}\"", md5_hex(b"first"));
    client.put("/cond-writes/k", &[("if-match", &etag)], b"third").await.expect(200, None);
    client.put("/cond-writes/k", &[("if-match", &etag)], b"fourth").await.expect(412, Some("PreconditionFailed"));
    client.put("/cond-writes/none", &[("if-match", &etag)], b"x").await.expect(404, Some("NoSuchKey"));
}

// ---------------------------------------------------------------- multipart

async fn create_upload(client: &common::Client, path: &str, headers: &[(&str, &str)]) -> String {
    let reply = client.post(&format!("{path}?uploads"), headers, b"").await;
    reply.expect(200, None);
    let text = reply.text();
    let start = text.find("<UploadId>").unwrap() + "<UploadId>".len();
    let end = text.find("</UploadId>").unwrap();
    text[start..end].to_owned()
}

async fn upload_part(client: &common::Client, path: &str, upload_id: &str, number: u32, body: &[u8]) -> String {
    let reply = client.put(&format!("{path}?partNumber={number}&uploadId={upload_id}"), &[], body).await;
    reply.expect(200, None);
    reply.header("etag").unwrap().to_owned()
}

fn complete_xml(parts: &[(u32, &str)]) -> String {
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (number, etag) in parts {
        xml.push_str(&format!("<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>"));
    }
    xml.push_str("</CompleteMultipartUpload>");
    xml
}

#[tokio::test]
async fn multipart_upload_assembles_parts_with_s3_etag() {
    use s3s::crypto::{Checksum as _, Md5};
    let (_server, client) = server_with_bucket("multi").await;
    let path = "/multi/assembled";
    let upload_id = create_upload(&client, path, &[("content-type", "text/x-parts"), ("x-amz-meta-k", "v")]).await;
    let parts = [data(MIN_PART as usize, 1), data(MIN_PART as usize + 10, 2), data(7, 3)];
    let mut etags = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        etags.push(upload_part(&client, path, &upload_id, i as u32 + 1, part).await);
    }
    let list: Vec<(u32, &str)> = etags.iter().enumerate().map(|(i, e)| (i as u32 + 1, e.as_str())).collect();
    let reply = client.post(&format!("{path}?uploadId={upload_id}"), &[], complete_xml(&list).as_bytes()).await;
    reply.expect(200, None);

    let mut md5s = Vec::new();
    for part in &parts {
        md5s.extend_from_slice(&Md5::checksum(part));
    }
    let expected_etag = format!("\"{}-3\"", hex::encode(Md5::checksum(&md5s)));
    assert!(reply.text().contains(&expected_etag.replace('"', "&quot;")) || reply.text().contains(&expected_etag));

    let got = client.get(path, &[]).await;
    got.expect(200, None);
    assert_eq!(got.body, parts.concat());
    assert_eq!(got.header("etag"), Some(expected_etag.as_str()));
    assert_eq!(got.header("content-type"), Some("text/x-parts"));
    assert_eq!(got.header("x-amz-meta-k"), Some("v"));

    // partNumber reads one part and reports the part count.
    let second = client.get(&format!("{path}?partNumber=2"), &[]).await;
    second.expect(206, None);
    assert_eq!(second.body, parts[1]);
    assert_eq!(second.header("x-amz-mp-parts-count"), Some("3"));
    let start = MIN_PART as usize;
    let content_range = format!("bytes {}-{}/{}", start, start + parts[1].len() - 1, parts.concat().len());
    assert_eq!(second.header("content-range"), Some(content_range.as_str()));
    client.get(&format!("{path}?partNumber=4"), &[]).await.expect(416, Some("InvalidPartNumber"));
    client.get(&format!("{path}?partNumber=1"), &[("range", "bytes=0-1")]).await.expect(400, Some("InvalidRequest"));

    // A range spanning the part boundary.
    let across = client.get(path, &[("range", &format!("bytes={}-{}", start - 3, start + 2))]).await;
    across.expect(206, None);
    assert_eq!(across.body, &parts.concat()[start - 3..start + 3]);

    // The upload is gone.
    let again = client.post(&format!("{path}?uploadId={upload_id}"), &[], complete_xml(&list).as_bytes()).await;
    again.expect(404, Some("NoSuchUpload"));
}

#[tokio::test]
async fn multipart_rejects_small_parts_bad_order_and_unknown_parts() {
    let (_server, client) = server_with_bucket("multi-bad").await;
    let path = "/multi-bad/k";
    let upload_id = create_upload(&client, path, &[]).await;
    let small = upload_part(&client, path, &upload_id, 1, &data(MIN_PART as usize - 1, 1)).await;
    let big = upload_part(&client, path, &upload_id, 2, &data(MIN_PART as usize, 2)).await;
    let last = upload_part(&client, path, &upload_id, 3, &data(5, 3)).await;
    let complete = |parts: Vec<(u32, &str)>| {
        let xml = complete_xml(&parts);
        let client = &client;
        let upload_id = upload_id.clone();
        async move { client.post(&format!("{path}?uploadId={upload_id}"), &[], xml.as_bytes()).await }
    };

    complete(vec![(1, &small), (2, &big)]).await.expect(400, Some("EntityTooSmall"));
    complete(vec![(2, &big), (1, &small)]).await.expect(400, Some("InvalidPartOrder"));
    complete(vec![(2, &big), (4, &big)]).await.expect(400, Some("InvalidPart"));
    complete(vec![(2, "\"0123456789abcdef0123456789abcdef\"")]).await.expect(400, Some("InvalidPart"));
    client.head(path, &[]).await.expect(404, None);

    // A failed completion leaves the upload usable: a valid subset completes.
    complete(vec![(2, &big), (3, &last)]).await.expect(200, None);
    let got = client.get(path, &[]).await;
    assert_eq!(got.body, [data(MIN_PART as usize, 2), data(5, 3)].concat());

    client.put(&format!("{path}?partNumber=0&uploadId=x"), &[], b"x").await.expect(400, Some("InvalidArgument"));
    client.put(&format!("{path}?partNumber=1&uploadId=nope"), &[], b"x").await.expect(404, Some("NoSuchUpload"));
}

#[tokio::test]
async fn multipart_composite_checksums() {
    let (_server, client) = server_with_bucket("multi-crc").await;
    let path = "/multi-crc/k";
    let upload_id = create_upload(&client, path, &[("x-amz-checksum-algorithm", "CRC32")]).await;
    let parts = [data(MIN_PART as usize, 1), data(10, 2)];
    let mut etags = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let crc = crc32_b64(part);
        let url = format!("{path}?partNumber={}&uploadId={upload_id}", i + 1);
        let reply = client.put(&url, &[("x-amz-checksum-crc32", &crc)], part).await;
        reply.expect(200, None);
        assert_eq!(reply.header("x-amz-checksum-crc32"), Some(crc.as_str()));
        etags.push(reply.header("etag").unwrap().to_owned());
    }
    // A part with another algorithm than the upload's is refused.
    let sha = base64(&[0u8; 32]);
    let url = format!("{path}?partNumber=3&uploadId={upload_id}");
    client.put(&url, &[("x-amz-checksum-sha256", &sha)], b"x").await.expect(400, Some("InvalidRequest"));

    let list = [(1, etags[0].as_str()), (2, etags[1].as_str())];
    client.post(&format!("{path}?uploadId={upload_id}"), &[], complete_xml(&list).as_bytes()).await.expect(200, None);

    use s3s::crypto::{Checksum as _, Crc32};
    let mut concatenated = Crc32::checksum(&parts[0]).to_vec();
    concatenated.extend_from_slice(&Crc32::checksum(&parts[1]));
    let expected = format!("{}-2", base64(&Crc32::checksum(&concatenated)));
    let head = client.head(path, &[("x-amz-checksum-mode", "ENABLED")]).await;
    assert_eq!(head.header("x-amz-checksum-crc32"), Some(expected.as_str()));
    assert_eq!(head.header("x-amz-checksum-type"), Some("COMPOSITE"));
    // The part-level checksum for partNumber reads.
    let part = client.head(&format!("{path}?partNumber=2"), &[("x-amz-checksum-mode", "ENABLED")]).await;
    assert_eq!(part.header("x-amz-checksum-crc32"), Some(crc32_b64(&parts[1]).as_str()));
}

#[tokio::test]
async fn list_parts_and_uploads_and_abort() {
    let (_server, client) = server_with_bucket("uploads").await;
    let first = create_upload(&client, "/uploads/a/one", &[]).await;
    let second = create_upload(&client, "/uploads/b", &[]).await;
    upload_part(&client, "/uploads/a/one", &first, 1, b"p1").await;
    upload_part(&client, "/uploads/a/one", &first, 2, b"p2").await;

    let parts = client.get(&format!("/uploads/a/one?uploadId={first}&max-parts=1"), &[]).await;
    parts.expect(200, None);
    let text = parts.text();
    assert!(text.contains("<PartNumber>1</PartNumber>") && !text.contains("<PartNumber>2</PartNumber>"), "{text}");
    assert!(text.contains("<IsTruncated>true</IsTruncated>"), "{text}");
    assert!(text.contains("<NextPartNumberMarker>1</NextPartNumberMarker>"), "{text}");

    let listed = client.get("/uploads?uploads&delimiter=/", &[]).await;
    listed.expect(200, None);
    let text = listed.text();
    assert!(text.contains(&second) && !text.contains(&first), "{text}");
    assert!(text.contains("<Prefix>a/</Prefix>"), "{text}");

    client.delete(&format!("/uploads/a/one?uploadId={first}")).await.expect(204, None);
    client.delete(&format!("/uploads/a/one?uploadId={first}")).await.expect(404, Some("NoSuchUpload"));
    let listed = client.get("/uploads?uploads", &[]).await.text();
    assert!(!listed.contains(&first) && listed.contains(&second), "{listed}");
}

// ---------------------------------------------------------------- copies

#[tokio::test]
async fn copy_object_directives_and_self_copy() {
    let (_server, client) = server_with_bucket("copies").await;
    let body = data(3000, 11);
    client.put("/copies/src", &[("content-type", "text/src"), ("x-amz-meta-a", "1")], &body).await.expect(200, None);

    // COPY keeps the metadata.
    let reply = client.put("/copies/dst", &[("x-amz-copy-source", "/copies/src")], b"").await;
    reply.expect(200, None);
    assert!(reply.text().contains(&md5_hex(&body)), "{}", reply.text());
    let copied = client.get("/copies/dst", &[]).await;
    assert_eq!(copied.body, body);
    assert_eq!(copied.header("content-type"), Some("text/src"));
    assert_eq!(copied.header("x-amz-meta-a"), Some("1"));

    // REPLACE takes the request's metadata.
    let headers = [
        ("x-amz-copy-source", "copies/src"),
        ("x-amz-metadata-directive", "REPLACE"),
        ("content-type", "text/new"),
        ("x-amz-meta-b", "2"),
    ];
    client.put("/copies/replaced", &headers, b"").await.expect(200, None);
    let replaced = client.head("/copies/replaced", &[]).await;
    assert_eq!(replaced.header("content-type"), Some("text/new"));
    assert_eq!(replaced.header("x-amz-meta-b"), Some("2"));
    assert_eq!(replaced.header("x-amz-meta-a"), None);

    // Copying onto itself needs a change.
    client.put("/copies/src", &[("x-amz-copy-source", "/copies/src")], b"").await.expect(400, Some("InvalidRequest"));
    let headers =
        [("x-amz-copy-source", "/copies/src"), ("x-amz-metadata-directive", "REPLACE"), ("x-amz-meta-c", "3")];
    client.put("/copies/src", &headers, b"").await.expect(200, None);
    let updated = client.get("/copies/src", &[]).await;
    assert_eq!(updated.body, body);
    assert_eq!(updated.header("x-amz-meta-c"), Some("3"));
    assert_eq!(updated.header("x-amz-meta-a"), None);

    // Copy-source conditions.
    let headers = [("x-amz-copy-source", "/copies/src"), ("x-amz-copy-source-if-match", "\"0000\"")];
    client.put("/copies/cond", &headers, b"").await.expect(412, Some("PreconditionFailed"));
    client.put("/copies/x", &[("x-amz-copy-source", "/copies/missing")], b"").await.expect(404, Some("NoSuchKey"));
}

#[tokio::test]
async fn upload_part_copy_with_ranges() {
    let (_server, client) = server_with_bucket("part-copy").await;
    let source = data(3 * MIN_PART as usize, 12);
    client.put_object("part-copy", "src", &source).await;
    let path = "/part-copy/dst";
    let upload_id = create_upload(&client, path, &[]).await;
    let first_range = format!("bytes=0-{}", MIN_PART - 1);
    let copy = |number: u32, range: String| {
        let client = &client;
        let upload_id = upload_id.clone();
        async move {
            let headers = [("x-amz-copy-source", "/part-copy/src"), ("x-amz-copy-source-range", range.as_str())];
            client.put(&format!("{path}?partNumber={number}&uploadId={upload_id}"), &headers, b"").await
        }
    };
    let first = copy(1, first_range).await;
    first.expect(200, None);
    let second = copy(2, format!("bytes={}-{}", 2 * MIN_PART, 2 * MIN_PART + 99)).await;
    second.expect(200, None);
    copy(3, format!("bytes=0-{}", source.len())).await.expect(400, Some("InvalidArgument"));

    let etag_of = |reply: &common::Reply| {
        let text = reply.text();
        let start = text.find("<ETag>").unwrap() + "<ETag>".len();
        let end = text.find("</ETag>").unwrap();
        text[start..end].replace("&quot;", "\"")
    };
    let (e1, e2) = (etag_of(&first), etag_of(&second));
    let list = [(1, e1.as_str()), (2, e2.as_str())];
    client.post(&format!("{path}?uploadId={upload_id}"), &[], complete_xml(&list).as_bytes()).await.expect(200, None);
    let got = client.get(path, &[]).await;
    let start = 2 * MIN_PART as usize;
    assert_eq!(got.body, [&source[..MIN_PART as usize], &source[start..start + 100]].concat());
}

// ---------------------------------------------------------------- listings

#[tokio::test]
async fn list_objects_v2_with_delimiter_pagination_and_url_encoding() {
    let (_server, client) = server_with_bucket("listing").await;
    for key in ["a.txt", "dir/one", "dir/two", "dir/sub/three", "z z+plus", "zz"] {
        client.put_object("listing", &key.replace(' ', "%20").replace('+', "%2B"), b"x").await;
    }
    let top = client.get("/listing?list-type=2&delimiter=/", &[]).await;
    top.expect(200, None);
    let text = top.text();
    assert!(text.contains("<Key>a.txt</Key>") && text.contains("<Prefix>dir/</Prefix>"), "{text}");
    assert!(!text.contains("<Key>dir/one</Key>"), "{text}");
    assert!(text.contains("<KeyCount>4</KeyCount>"), "{text}");

    let encoded = client.get("/listing?list-type=2&prefix=z&encoding-type=url", &[]).await.text();
    assert!(encoded.contains("<Key>z%20z%2Bplus</Key>"), "{encoded}");
    assert!(encoded.contains("<EncodingType>url</EncodingType>"), "{encoded}");

    // Page through two at a time.
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let url = match &token {
            Some(t) => format!("/listing?list-type=2&max-keys=2&continuation-token={t}"),
            None => "/listing?list-type=2&max-keys=2".to_owned(),
        };
        let page = client.get(&url, &[]).await.text();
        for part in page.split("<Key>").skip(1) {
            keys.push(part[..part.find("</Key>").unwrap()].to_owned());
        }
        token = page
            .find("<NextContinuationToken>")
            .map(|s| page[s + 23..page.find("</NextContinuationToken>").unwrap()].to_owned());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(keys, ["a.txt", "dir/one", "dir/sub/three", "dir/two", "z z+plus", "zz"]);

    let after = client.get("/listing?list-type=2&start-after=dir/two", &[]).await.text();
    assert!(after.contains("<Key>zz</Key>") && !after.contains("<Key>dir/two</Key>"), "{after}");
    client.get("/listing?list-type=2&continuation-token=%2A%2A", &[]).await.expect(400, Some("InvalidArgument"));

    // V1 with marker.
    let v1 = client.get("/listing?marker=dir/sub/three&max-keys=1", &[]).await.text();
    assert!(v1.contains("<Key>dir/two</Key>") && v1.contains("<IsTruncated>true</IsTruncated>"), "{v1}");
    assert!(v1.contains("<NextMarker>dir/two</NextMarker>"), "{v1}");
}

#[tokio::test]
async fn delete_objects_reports_each_key() {
    let (_server, client) = server_with_bucket("bulk").await;
    client.put_object("bulk", "one", b"1").await;
    client.put_object("bulk", "two", b"2").await;
    let xml = "<Delete><Object><Key>one</Key></Object><Object><Key>two</Key></Object>\
               <Object><Key>never</Key></Object></Delete>";
    use s3s::crypto::{Checksum as _, Md5};
    let md5 = base64(&Md5::checksum(xml.as_bytes()));
    let reply = client.post("/bulk?delete", &[("content-md5", &md5)], xml.as_bytes()).await;
    reply.expect(200, None);
    let text = reply.text();
    assert!(text.contains("<Key>one</Key>") && text.contains("<Key>never</Key>"), "{text}");
    client.head("/bulk/one", &[]).await.expect(404, None);
    client.head("/bulk/two", &[]).await.expect(404, None);
}

#[tokio::test]
async fn delete_objects_verifies_content_md5_and_checksums_before_deleting() {
    use s3s::crypto::{Checksum as _, Md5};
    let (_server, client) = server_with_bucket("bulkmd5").await;
    client.put_object("bulkmd5", "kept", b"k").await;
    let xml = b"<Delete><Object><Key>kept</Key></Object></Delete>";
    let other = b"<Delete><Object><Key>other</Key></Object></Delete>";
    let refused: [(&str, String, u16, &str); 4] = [
        ("content-md5", base64(&Md5::checksum(other)), 400, "BadDigest"),
        ("x-amz-checksum-crc32", crc32_b64(other), 400, "BadDigest"),
        ("content-md5", String::new(), 400, "InvalidDigest"),
        ("content-md5", "not-an-md5".to_owned(), 400, "InvalidDigest"),
    ];
    for (name, value, status, code) in &refused {
        client.post("/bulkmd5?delete", &[(name, value)], xml).await.expect(*status, Some(code));
        client.head("/bulkmd5/kept", &[]).await.expect(200, None);
    }
    // s3s reads an XML body as plain bytes only: an aws-chunked one is refused before anything is deleted (the
    // listener's capture, which sees the encoded bytes, never has to check one).
    let md5 = base64(&Md5::checksum(xml));
    let decoded_len = xml.len().to_string();
    let headers = [
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", &decoded_len),
        ("x-amz-trailer", "x-amz-checksum-crc32"),
        ("content-md5", &md5),
    ];
    let encoded = aws_chunked(xml, 16, &[("x-amz-checksum-crc32", &crc32_b64(xml))]);
    let reply = client.send("POST", "/bulkmd5?delete", &headers, Payload::StreamingUnsignedTrailer(&encoded)).await;
    reply.expect(400, Some("IncompleteBody"));
    client.head("/bulkmd5/kept", &[]).await.expect(200, None);

    client.post("/bulkmd5?delete", &[("x-amz-checksum-crc32", &crc32_b64(xml))], xml).await.expect(200, None);
    client.head("/bulkmd5/kept", &[]).await.expect(404, None);
    client.put_object("bulkmd5", "kept", b"k").await;
    client.post("/bulkmd5?delete", &[("content-md5", &md5)], xml).await.expect(200, None);
    client.head("/bulkmd5/kept", &[]).await.expect(404, None);
}

#[tokio::test]
async fn an_empty_content_md5_is_invalid_digest_on_every_body() {
    let (server, client) = server_with_bucket("md5empty").await;
    let body = data(2000, 3);
    client.put("/md5empty/k", &[("content-md5", "")], &body).await.expect(400, Some("InvalidDigest"));
    client.head("/md5empty/k", &[]).await.expect(404, None);
    let id = create_upload(&client, "/md5empty/mpu", &[]).await;
    let path = format!("/md5empty/mpu?partNumber=1&uploadId={id}");
    client.put(&path, &[("content-md5", "")], &body).await.expect(400, Some("InvalidDigest"));
    let parts = client.get(&format!("/md5empty/mpu?uploadId={id}"), &[]).await;
    assert!(!parts.text().contains("<Part>"), "{}", parts.text());
    assert!(server.staged_files().is_empty());
}

#[tokio::test]
async fn traversal_keys_stay_inside_the_bucket() {
    let (server, client) = server_with_bucket("keys").await;
    let keys = ["../../escape", "../..", "..", "a/../../b", "/absolute", "%2e%2e/%2e%2e/etc", "nul\0byte", "./."];
    for (i, key) in keys.iter().enumerate() {
        let body = data(10 + i, i as u8);
        let path = format!("/keys/{}", encode_key(key));
        client.put(&path, &[], &body).await.expect(200, None);
        assert_eq!(client.get(&path, &[]).await.body, body, "{key}");
    }
    // Nothing was written outside the data directory (its parent holds only it and the users file).
    let parent = server.data_dir.parent().unwrap();
    let mut beside: Vec<_> = std::fs::read_dir(parent).unwrap().filter_map(Result::ok).map(|e| e.file_name()).collect();
    beside.sort();
    assert_eq!(beside, ["data", "users.toml"]);
    let listed = client.get("/keys?list-type=2", &[]).await.text();
    assert_eq!(listed.matches("<Key>").count(), keys.len(), "{listed}");
    let too_long = "k".repeat(1025);
    client.put(&format!("/keys/{too_long}"), &[], b"x").await.expect(400, Some("KeyTooLongError"));
}

// ---------------------------------------------------------------- buckets

#[tokio::test]
async fn bucket_lifecycle_and_reserved_names() {
    let server = TestServer::start(MIN_PART).await;
    let client = server.client();
    for reserved in ["coffer", "rustfs", "minio"] {
        client.put(&format!("/{reserved}"), &[], b"").await.expect(400, Some("InvalidBucketName"));
    }
    client.put("/Bad_Name", &[], b"").await.expect(400, Some("InvalidBucketName"));
    client.create_bucket("life").await;
    client.put("/life", &[], b"").await.expect(409, Some("BucketAlreadyOwnedByYou"));
    client.head("/life", &[]).await.expect(200, None);
    let location = client.get("/life?location", &[]).await;
    location.expect(200, None);
    let buckets = client.get("/", &[]).await.text();
    assert!(buckets.contains("<Name>life</Name>") && !buckets.contains("coffer</Name>"), "{buckets}");

    client.put_object("life", "k", b"x").await;
    client.delete("/life").await.expect(409, Some("BucketNotEmpty"));
    client.delete("/life/k").await.expect(204, None);
    client.delete("/life").await.expect(204, None);
    client.head("/life", &[]).await.expect(404, None);
}

// ---------------------------------------------------------------- authentication

#[tokio::test]
async fn authentication_failures() {
    let (server, client) = server_with_bucket("auth").await;
    client.put_object("auth", "k", b"secret data").await;

    let wrong_secret = server.client_as(common::ROOT_KEY, "not-the-secret");
    let reply = wrong_secret.get("/auth/k", &[]).await;
    reply.expect(403, Some("SignatureDoesNotMatch"));
    assert!(!reply.text().contains("not-the-secret") && !reply.text().contains(common::ROOT_SECRET));

    let unknown = server.client_as("nobody", "whatever");
    unknown.get("/auth/k", &[]).await.expect(403, Some("InvalidAccessKeyId"));

    client.send_anonymous("GET", "/auth/k").await.expect(403, Some("AccessDenied"));

    // Users from the users file work with the buckets they own; another user's bucket is closed to them.
    let user = server.client_as(USER_KEY, USER_SECRET);
    user.get("/auth/k", &[]).await.expect(403, Some("AccessDenied"));
    user.send("PUT", "/auth/signed", &[], Payload::Signed(b"abc")).await.expect(403, Some("AccessDenied"));
    user.create_bucket("mine").await;
    user.send("PUT", "/mine/signed", &[], Payload::Signed(b"abc")).await.expect(200, None);
    assert_eq!(user.get("/mine/signed", &[]).await.body, b"abc");
    // A body that does not match the signed payload hash is refused and not stored.
    let tampered = Payload::Tampered { signed: b"abc", sent: b"abd" };
    user.send("PUT", "/mine/tampered", &[], tampered).await.expect(400, Some("XAmzContentSHA256Mismatch"));
    user.head("/mine/tampered", &[]).await.expect(404, None);
}

// ---------------------------------------------------------------- shutdown

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_stops_accepting() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut server, client) = server_with_bucket("drain").await;
    let body = data(100_000, 13);
    let request = client.signed("PUT", "/drain/in-flight", &[("expect", "100-continue")], Payload::Signed(&body));
    let mut stream = tokio::net::TcpStream::connect(server.address).await.unwrap();
    stream.write_all(common::request_head(&request).as_bytes()).await.unwrap();
    // "100 Continue" means the handler is running and waiting for the body: the request is in flight.
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).await.unwrap();
    assert!(interim.starts_with(b"HTTP/1.1 100 Continue"), "{}", String::from_utf8_lossy(&interim));

    let stopped = server.shut_down();
    stream.write_all(&body[..50_000]).await.unwrap();
    stream.write_all(&body[50_000..]).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let reply = common::parse_response(&raw, false);
    reply.expect(200, None);

    stopped.await.unwrap();
    assert!(tokio::net::TcpStream::connect(server.address).await.is_err(), "still accepting after shutdown");
    // The data directory holds the completed upload.
    let store = coffer_store::Store::open(server.data_dir.clone()).await.unwrap();
    assert_eq!(store.head_object("drain", "in-flight").await.unwrap().size, body.len() as u64);
}
