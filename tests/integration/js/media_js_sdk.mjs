// matrix-js-sdk's own media helpers against a real server (tests/integration/test_media_js_sdk.py):
// log in, read the media config, upload (uploadContent), then download and thumbnail through the URLs
// mxcUrlToHttp builds for authenticated media. Prints one JSON line of what it saw; exits 1 on an error.
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import * as sdk from "matrix-js-sdk";

const { BASE_URL, USER_ID, PASSWORD, IMAGE_PATH } = process.env;
const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

async function get(url, token) {
    const response = await fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    const body = Buffer.from(await response.arrayBuffer());
    return { status: response.status, type: response.headers.get("content-type"), body };
}

try {
    const client = sdk.createClient({ baseUrl: BASE_URL });
    await client.login("m.login.password", { identifier: { type: "m.id.user", user: USER_ID }, password: PASSWORD });
    const token = client.getAccessToken();
    const config = await client.getMediaConfig(true);
    const image = readFileSync(IMAGE_PATH);
    const uploaded = await client.uploadContent(new Blob([image], { type: "image/png" }), { name: "photo.png", type: "image/png" });
    const uri = uploaded.content_uri;
    const downloadUrl = client.mxcUrlToHttp(uri, undefined, undefined, undefined, false, true, true);
    const thumbnailUrl = client.mxcUrlToHttp(uri, 64, 64, "crop", false, true, true);
    const download = await get(downloadUrl, token);
    const thumbnail = await get(thumbnailUrl, token);
    const anonymous = await get(downloadUrl, null);
    console.log(JSON.stringify({
        user_id: client.getUserId(), upload_size: config["m.upload.size"], content_uri: uri,
        download_url: downloadUrl, thumbnail_url: thumbnailUrl,
        download: { status: download.status, type: download.type, sha256: sha256(download.body) },
        thumbnail: { status: thumbnail.status, type: thumbnail.type, length: thumbnail.body.length,
                     png: thumbnail.body.subarray(1, 4).toString() === "PNG" },
        anonymous: { status: anonymous.status, body: anonymous.body.toString() },
    }));
    process.exit(0);
} catch (e) {
    console.error(e && e.stack ? e.stack : String(e));
    process.exit(1);
}
