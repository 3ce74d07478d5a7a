//! `…/files`: files in and out of a running sandbox (`/v1/sandboxes/{id}/files…`) or a
//! volume (`/v1/volumes/{id}/files…`). Uploads and downloads stream; the rules (the tar
//! rewrite, writable targets, the volume helper) are the files service's ([`crate::files`]).

use axum::body::{Body, HttpBody};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::sandboxes::sandbox_id;
use super::volumes::volume_id;
use super::AppState;
use crate::audit::Actor;
use crate::files::{
    Download, ListFiles, ListedFile, Place, StatFile, Upload, UploadForm, MAX_LIST_DEPTH,
};

/// The `path` query of every files route.
#[derive(Clone, Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct PathParams {
    /// An absolute, normalised path (in a volume: from its root).
    pub path: String,
}

/// The query of a listing.
#[derive(Clone, Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    /// The directory (default `/`).
    #[serde(default)]
    pub path: Option<String>,
    /// How deep to list, 1..=32 (default 1).
    #[serde(default)]
    pub depth: Option<u32>,
}

/// One file, directory or link.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct FileDto {
    /// The name (in a listing: relative to the listed directory).
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Bytes.
    pub size: u64,
    /// Mode bits, e.g. `0o644` as 420.
    pub mode: u32,
    /// RFC 3339.
    pub mtime: Option<String>,
    /// A symlink's target.
    pub link_target: Option<String>,
}

/// A listing.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct ListingDto {
    /// At most 10 000 entries.
    pub entries: Vec<FileDto>,
    /// Whether entries were left out.
    pub truncated: bool,
}

/// What an upload wrote.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct UploadedDto {
    /// Entries written (parent directories added included).
    pub entries: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

impl From<ListedFile> for FileDto {
    fn from(file: ListedFile) -> Self {
        Self {
            name: file.name,
            kind: file.kind,
            size: file.size,
            mode: file.mode,
            mtime: file.mtime,
            link_target: file.link_target,
        }
    }
}

fn query<T>(params: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    params
        .map(|Query(params)| params)
        .map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))
}

async fn upload(
    state: AppState,
    actor: Actor,
    place: Place,
    path: String,
    form: UploadForm,
    body: Body,
) -> Result<Response, ApiError> {
    let body = body
        .into_data_stream()
        .map_err(std::io::Error::other)
        .boxed();
    let command = Upload {
        place,
        path,
        form,
        body,
    };
    let uploaded = state.services.files.run(&actor, command).await?;
    let dto = UploadedDto {
        entries: uploaded.entries,
        bytes: uploaded.bytes,
    };
    Ok(Json(dto).into_response())
}

/// The body's declared length: its `Content-Length`, else an exact size the body knows.
fn content_length(headers: &HeaderMap, body: &Body) -> UploadForm {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .or_else(|| HttpBody::size_hint(body).exact());
    UploadForm::Content { length }
}

async fn download(
    state: AppState,
    actor: Actor,
    place: Place,
    path: String,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let raw = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("application/octet-stream"));
    let command = Download { place, path, raw };
    let downloaded = state.services.files.run(&actor, command).await?;
    let mut response = Body::from_stream(downloaded.body).into_response();
    let headers = response.headers_mut();
    let content_type = if downloaded.raw {
        "application/octet-stream"
    } else {
        "application/x-tar"
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(length) = downloaded.length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    let name: String = downloaded
        .name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    let name = if downloaded.raw {
        name
    } else {
        format!("{name}.tar")
    };
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

async fn list(
    state: AppState,
    actor: Actor,
    place: Place,
    params: ListParams,
) -> Result<Json<ListingDto>, ApiError> {
    let command = ListFiles {
        place,
        path: params.path.unwrap_or_else(|| "/".to_owned()),
        depth: params.depth.unwrap_or(1).min(MAX_LIST_DEPTH + 1),
    };
    let listing = state.services.files.run(&actor, command).await?;
    Ok(Json(ListingDto {
        entries: listing.entries.into_iter().map(FileDto::from).collect(),
        truncated: listing.truncated,
    }))
}

async fn stat(
    state: AppState,
    actor: Actor,
    place: Place,
    path: String,
) -> Result<Json<FileDto>, ApiError> {
    let file = state
        .services
        .files
        .run(&actor, StatFile { place, path })
        .await?;
    Ok(Json(file.into()))
}

/// Declares the five handlers of one place (sandbox or volume).
macro_rules! files_routes {
    ($files:literal, $content:literal, $listp:literal, $statp:literal,
     $tag:literal, $id:literal, $place:expr, $parse:ident,
     $put:ident, $put_content:ident, $get:ident, $list:ident, $stat:ident) => {
        /// Upload a tar into the directory `path`; it is rewritten (see the files docs).
        #[utoipa::path(put, path = $files, tag = $tag,
                    params(("id" = String, Path, description = $id), PathParams),
                    request_body(content = Vec<u8>, content_type = "application/x-tar"),
                    responses((status = 200, body = UploadedDto), (status = 400), (status = 404),
                        (status = 409), (status = 413)))]
        pub(crate) async fn $put(
            State(state): State<AppState>,
            Extension(actor): Extension<Actor>,
            id: Result<Path<String>, PathRejection>,
            params: Result<Query<PathParams>, QueryRejection>,
            body: Body,
        ) -> Result<Response, ApiError> {
            let place = $place($parse(id)?);
            let params = query(params)?;
            upload(state, actor, place, params.path, UploadForm::Archive, body).await
        }

        /// Write the raw body (with a `Content-Length`) as the file `path`.
        #[utoipa::path(put, path = $content, tag = $tag,
                    params(("id" = String, Path, description = $id), PathParams),
                    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
                    responses((status = 200, body = UploadedDto), (status = 400), (status = 404),
                        (status = 409), (status = 411), (status = 413)))]
        pub(crate) async fn $put_content(
            State(state): State<AppState>,
            Extension(actor): Extension<Actor>,
            id: Result<Path<String>, PathRejection>,
            params: Result<Query<PathParams>, QueryRejection>,
            headers: HeaderMap,
            body: Body,
        ) -> Result<Response, ApiError> {
            let place = $place($parse(id)?);
            let params = query(params)?;
            let form = content_length(&headers, &body);
            upload(state, actor, place, params.path, form, body).await
        }

        /// Download `path` as a tar; with `Accept: application/octet-stream` on a regular
        /// file, its raw bytes.
        #[utoipa::path(get, path = $files, tag = $tag,
                    params(("id" = String, Path, description = $id), PathParams),
                    responses((status = 200, content_type = "application/x-tar"), (status = 404),
                        (status = 409)))]
        pub(crate) async fn $get(
            State(state): State<AppState>,
            Extension(actor): Extension<Actor>,
            id: Result<Path<String>, PathRejection>,
            params: Result<Query<PathParams>, QueryRejection>,
            headers: HeaderMap,
        ) -> Result<Response, ApiError> {
            let place = $place($parse(id)?);
            let params = query(params)?;
            download(state, actor, place, params.path, &headers).await
        }

        /// List a directory (at most 10 000 entries, `truncated` past them).
        #[utoipa::path(get, path = $listp, tag = $tag,
                    params(("id" = String, Path, description = $id), ListParams),
                    responses((status = 200, body = ListingDto), (status = 404), (status = 409)))]
        pub(crate) async fn $list(
            State(state): State<AppState>,
            Extension(actor): Extension<Actor>,
            id: Result<Path<String>, PathRejection>,
            params: Result<Query<ListParams>, QueryRejection>,
        ) -> Result<Json<ListingDto>, ApiError> {
            let place = $place($parse(id)?);
            list(state, actor, place, query(params)?).await
        }

        /// One path's type, size, mode, mtime and link target.
        #[utoipa::path(get, path = $statp, tag = $tag,
                    params(("id" = String, Path, description = $id), PathParams),
                    responses((status = 200, body = FileDto), (status = 404), (status = 409)))]
        pub(crate) async fn $stat(
            State(state): State<AppState>,
            Extension(actor): Extension<Actor>,
            id: Result<Path<String>, PathRejection>,
            params: Result<Query<PathParams>, QueryRejection>,
        ) -> Result<Json<FileDto>, ApiError> {
            let place = $place($parse(id)?);
            stat(state, actor, place, query(params)?.path).await
        }
    };
}

files_routes!(
    "/v1/sandboxes/{id}/files",
    "/v1/sandboxes/{id}/files/content",
    "/v1/sandboxes/{id}/files/list",
    "/v1/sandboxes/{id}/files/stat",
    "sandboxes",
    "Sandbox id",
    Place::Sandbox,
    sandbox_id,
    sandbox_put,
    sandbox_put_content,
    sandbox_get,
    sandbox_list,
    sandbox_stat
);
files_routes!(
    "/v1/volumes/{id}/files",
    "/v1/volumes/{id}/files/content",
    "/v1/volumes/{id}/files/list",
    "/v1/volumes/{id}/files/stat",
    "volumes",
    "Volume id",
    Place::Volume,
    volume_id,
    volume_put,
    volume_put_content,
    volume_get,
    volume_list,
    volume_stat
);
