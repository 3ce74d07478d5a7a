//! The files benchmark (`bench/files/run.sh`): against one real DinD over mTLS, in one run, it
//! compares
//! - uploading a 100 MB tar into a volume through the files API (the controller's router,
//!   driven in-process: the tar rewrite, the helper container, the archive call) against the
//!   same archive sent straight to Docker's archive endpoint with bollard (what `docker cp`
//!   does) into a helper mounting the same volume; and the same for the download;
//! - listing a directory of 10k files through the API (timed to the last byte of the
//!   answer, parsed after).
//!
//! Runs alternate API and direct so drift hits both alike; it prints `bench ...` lines and the
//! ratios (direct time / API time, so 1.0 is parity and the target is ≥ 0.8). It asserts
//! only that the harness works. Usage: `files_bench [--iterations N] [--megabytes N]`.
// A benchmark driver: a failed harness step must stop it loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::time::{Duration, Instant};

use airlock::api::app;
use airlock::docker::spec::files::files_helper_body;
use airlock::volume::VolumeId;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, RemoveContainerOptions,
    UploadToContainerOptions,
};
use e2e::agents::AgentApi;
use e2e::{dind_with_testbox, Timing};
use futures_util::StreamExt;
use test_support::dind::{DindOptions, TESTBOX_IMAGE};
use tower::ServiceExt;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|at| args.get(at + 1))
        .map_or(default, |v| v.parse().unwrap())
}

/// A tar of `megabytes` MiB in 1 MiB files under `dir/`.
fn big_tar(dir: &str, megabytes: usize) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::with_capacity((megabytes + 1) << 20));
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    for at in 0..megabytes {
        let mut header = tar::Header::new_gnu();
        header.set_size(chunk.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, format!("{dir}/f{at}"), chunk.as_slice())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A download through the API, its body counted as it streams (as the direct peer does).
async fn api_download(c: &AgentApi, token: &str, uri: &str) -> usize {
    let request = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = app(c.state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = response.into_body().into_data_stream();
    let mut got = 0;
    while let Some(chunk) = stream.next().await {
        got += chunk.unwrap().len();
    }
    got
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let iterations = arg("--iterations", 3);
    let megabytes = arg("--megabytes", 100);
    let mut timing = Timing::start("files-bench");
    let dind = dind_with_testbox(DindOptions::new("files-bench"), &mut timing)
        .await
        .unwrap();
    let c = AgentApi::start(dind, &[], &mut timing).await;
    let (_, token) = c.member("bench").await;
    let volume = c.volume(&token, "bench", 4096).await;
    let docker_name = c
        .store
        .get_volume(airlock::store::Scope::All, volume.parse().unwrap())
        .await
        .unwrap()
        .unwrap()
        .docker_name;
    let docker = c.dind.docker().clone();
    let helper = "bench-direct-helper";
    let body = files_helper_body(VolumeId::new(), &docker_name, TESTBOX_IMAGE, false, "bench");
    let options = CreateContainerOptions {
        name: Some(helper.to_owned()),
        ..CreateContainerOptions::default()
    };
    docker.create_container(Some(options), body).await.unwrap();

    let mut api_up = Vec::new();
    let mut direct_up = Vec::new();
    let mut api_down = Vec::new();
    let mut direct_down = Vec::new();
    for round in 0..iterations {
        let api_tar = big_tar(&format!("api{round}"), megabytes);
        let direct_tar = big_tar(&format!("direct{round}"), megabytes);
        let size = api_tar.len();

        let uri = format!("/v1/volumes/{volume}/files?path=/");
        let started = Instant::now();
        let (status, _, out) = c.raw(&token, Method::PUT, &uri, &[], api_tar).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&out));
        api_up.push(started.elapsed());

        let started = Instant::now();
        let options = UploadToContainerOptions {
            path: "/v".to_owned(),
            ..UploadToContainerOptions::default()
        };
        docker
            .upload_to_container(helper, Some(options), bollard::body_full(direct_tar.into()))
            .await
            .unwrap();
        direct_up.push(started.elapsed());

        let uri = format!("/v1/volumes/{volume}/files?path=/api{round}");
        let started = Instant::now();
        let got = api_download(&c, &token, &uri).await;
        api_down.push(started.elapsed());
        assert!(got >= size - 4096, "{got} of {size}");

        let started = Instant::now();
        let options = DownloadFromContainerOptions {
            path: format!("/v/direct{round}"),
        };
        let mut stream = docker.download_from_container(helper, Some(options));
        let mut got = 0;
        while let Some(chunk) = stream.next().await {
            got += chunk.unwrap().len();
        }
        direct_down.push(started.elapsed());
        assert!(got >= size - 4096);
        println!(
            "bench round={round} upload api={:.2}s direct={:.2}s download api={:.2}s direct={:.2}s",
            secs(api_up[round]),
            secs(direct_up[round]),
            secs(api_down[round]),
            secs(direct_down[round])
        );
    }
    let (au, du) = (median(api_up), median(direct_up));
    let (ad, dd) = (median(api_down), median(direct_down));
    println!(
        "bench upload {megabytes}MiB median api={:.2}s direct={:.2}s ratio(direct/api)={:.2}",
        secs(au),
        secs(du),
        secs(du) / secs(au)
    );
    println!(
        "bench download {megabytes}MiB median api={:.2}s direct={:.2}s ratio(direct/api)={:.2}",
        secs(ad),
        secs(dd),
        secs(dd) / secs(ad)
    );

    // Listing 10k files.
    let mut builder = tar::Builder::new(Vec::new());
    for at in 0..10_000 {
        let mut header = tar::Header::new_gnu();
        header.set_size(4);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, format!("many/f{at:05}"), &b"data"[..])
            .unwrap();
    }
    let many = builder.into_inner().unwrap();
    let uri = format!("/v1/volumes/{volume}/files?path=/");
    let (status, _, _) = c.raw(&token, Method::PUT, &uri, &[], many).await;
    assert_eq!(status, StatusCode::OK);
    let uri = format!("/v1/volumes/{volume}/files/list?path=/many&depth=1");
    let mut lists = Vec::new();
    for _ in 0..iterations {
        let started = Instant::now();
        let (status, _, body) = c.raw(&token, Method::GET, &uri, &[], Vec::new()).await;
        lists.push(started.elapsed());
        assert_eq!(status, StatusCode::OK);
        let listing: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(listing["entries"].as_array().unwrap().len(), 10_000);
    }
    println!("bench list 10k median={:.3}s", secs(median(lists)));
    let options = RemoveContainerOptions {
        force: true,
        ..RemoveContainerOptions::default()
    };
    docker
        .remove_container(helper, Some(options))
        .await
        .unwrap();
    timing.phase("done");
}
