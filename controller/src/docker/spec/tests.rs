//! The sandbox bodies, snapshot-tested: the hardening and the labels.

use std::collections::BTreeMap;
use std::time::Duration;

use expect_test::expect;
use serde_json::Value;

use super::*;
use crate::sandbox::{Cpus, Limits, LimitsRequest, Maximums, RunAs, SandboxRequest};

/// A runtime volume hash.
const RUNTIME: &str = "0123456789ab";

fn placement() -> Placement<'static> {
    Placement {
        id: "0192f0c4-7a4e-7cde-8b1a-3c5d7e9f0a1b".parse().unwrap(),
        generation: 3,
        node: "node-a",
        subnet: SandboxSubnet::new("10.213.0.8/29".parse().unwrap()).unwrap(),
        proxy_token: "tok3n",
    }
}

fn maximums() -> Maximums {
    Maximums {
        limits: Limits {
            cpus: Cpus::from_millis(4000),
            memory_mb: 4096,
            pids: 1024,
            disk_mb: Some(2048),
        },
        timeout: Duration::from_secs(3600),
        default_timeout: Duration::from_secs(600),
    }
}

fn spec(req: SandboxRequest) -> SandboxSpec {
    req.validate(&maximums()).unwrap()
}

/// JSON with every object's keys sorted, so HashMap order never shows in a snapshot.
fn pretty(value: &impl serde::Serialize) -> String {
    fn sorted(value: Value) -> Value {
        match value {
            Value::Object(map) => {
                let entries: BTreeMap<String, Value> =
                    map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                Value::Object(entries.into_iter().collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
            other => other,
        }
    }
    serde_json::to_string_pretty(&sorted(serde_json::to_value(value).unwrap())).unwrap()
}

#[test]
fn network_body_snapshot() {
    expect![[r#"
        {
          "Attachable": false,
          "Driver": "bridge",
          "EnableIPv6": false,
          "IPAM": {
            "Config": [
              {
                "Gateway": "10.213.0.9",
                "Subnet": "10.213.0.8/29"
              }
            ],
            "Driver": "default"
          },
          "Internal": true,
          "Labels": {
            "airlock.generation": "3",
            "airlock.node": "node-a",
            "airlock.sandbox.id": "0192f0c4-7a4e-7cde-8b1a-3c5d7e9f0a1b"
          },
          "Name": "airlock-sbx-0192f0c4-7a4e-7cde-8b1a-3c5d7e9f0a1b"
        }"#]]
    .assert_eq(&pretty(&network_body(&placement())));
}

#[test]
fn default_container_body_snapshot() {
    let spec = spec(SandboxRequest {
        image: "testbox:latest".into(),
        ..SandboxRequest::default()
    });
    expect![[r#"
        {
          "AttachStdin": true,
          "Cmd": [],
          "Entrypoint": [
            "/.airlock/init"
          ],
          "Env": [
            "AIRLOCK_INIT_WRITABLE=/tmp"
          ],
          "HostConfig": {
            "AutoRemove": false,
            "Binds": [],
            "CapAdd": [],
            "CapDrop": [
              "ALL"
            ],
            "Devices": [],
            "ExtraHosts": [
              "airlock.internal:10.213.0.10"
            ],
            "IpcMode": "private",
            "LogConfig": {
              "Config": {
                "max-file": "3",
                "max-size": "10m"
              },
              "Type": "json-file"
            },
            "Memory": 536870912,
            "MemorySwap": 536870912,
            "Mounts": [
              {
                "ReadOnly": true,
                "Source": "airlock-runtime-0123456789ab",
                "Target": "/.airlock",
                "Type": "volume",
                "VolumeOptions": {
                  "NoCopy": true
                }
              }
            ],
            "NanoCpus": 1000000000,
            "NetworkMode": "airlock-sbx-0192f0c4-7a4e-7cde-8b1a-3c5d7e9f0a1b",
            "PidsLimit": 256,
            "Privileged": false,
            "PublishAllPorts": false,
            "ReadonlyRootfs": true,
            "SecurityOpt": [
              "no-new-privileges:true"
            ],
            "Tmpfs": {
              "/run/airlock": "rw,nosuid,nodev,noexec,mode=0755,size=9m,uid=65534,gid=65534",
              "/tmp": "rw,nosuid,nodev,size=64m"
            },
            "Ulimits": [
              {
                "Hard": 4096,
                "Name": "nofile",
                "Soft": 4096
              }
            ]
          },
          "Image": "testbox:latest",
          "Labels": {
            "airlock.generation": "3",
            "airlock.node": "node-a",
            "airlock.sandbox.id": "0192f0c4-7a4e-7cde-8b1a-3c5d7e9f0a1b"
          },
          "NetworkDisabled": false,
          "NetworkingConfig": {
            "EndpointsConfig": {
              "airlock-sbx-0192f0c4-7a4e-7cde-8b1a-3c5d7e9f0a1b": {
                "IPAMConfig": {
                  "IPv4Address": "10.213.0.11"
                }
              }
            }
          },
          "OpenStdin": true,
          "StdinOnce": false,
          "User": "65534:65534"
        }"#]]
    .assert_eq(&pretty(&container_body(&spec, &placement(), RUNTIME)));
}

#[test]
fn custom_container_body_snapshot() {
    let spec = spec(SandboxRequest {
        image: "agent:v1".into(),
        cmd: vec!["python".into(), "main.py".into()],
        env: vec![("MODE".into(), "fast".into())],
        limits: LimitsRequest {
            cpus: Some(0.5),
            memory_mb: Some(256),
            pids: Some(64),
            disk_mb: Some(1024),
        },
        labels: [("team".to_owned(), "ml".to_owned())].into(),
        rootfs: RootFs::Writable,
        workdir: Some("/workspace".into()),
        ..SandboxRequest::default()
    })
    .run_with(
        RunAs {
            uid: 1000,
            gid: 1000,
        },
        Home::Tmpfs { size_mb: 256 },
    )
    .unwrap();
    expect![[r#"
        {
          "AttachStdin": true,
          "Cmd": [],
          "Entrypoint": [
            "/.airlock/init"
          ],
          "Env": [
            "AIRLOCK_INIT_WRITABLE=/tmp:/home/agent"
          ],
          "HostConfig": {
            "AutoRemove": false,
            "Binds": [],
            "CapAdd": [],
            "CapDrop": [
              "ALL"
            ],
            "Devices": [],
            "ExtraHosts": [
              "airlock.internal:10.213.0.10"
            ],
            "IpcMode": "private",
            "LogConfig": {
              "Config": {
                "max-file": "3",
                "max-size": "10m"
              },
              "Type": "json-file"
            },
            "Memory": 268435456,
            "MemorySwap": 268435456,
            "Mounts": [
              {
                "ReadOnly": true,
                "Source": "airlock-runtime-0123456789ab",
                "Target": "/.airlock",
                "Type": "volume",
                "VolumeOptions": {
                  "NoCopy": true
                }
              }
            ],
            "NanoCpus": 500000000,
            "NetworkMode": "airlock-sbx-0192f0c4-7a4e-7cde-8b1a-3c5d7e9f0a1b",
            "PidsLimit": 64,
            "Privileged": false,
            "PublishAllPorts": false,
            "ReadonlyRootfs": false,
            "SecurityOpt": [
              "no-new-privileges:true"
            ],
            "StorageOpt": {
              "size": "1024M"
            },
            "Tmpfs": {
              "/home/agent": "rw,nosuid,nodev,mode=0700,size=256m,uid=1000,gid=1000",
              "/run/airlock": "rw,nosuid,nodev,noexec,mode=0755,size=9m,uid=1000,gid=1000"
            },
            "Ulimits": [
              {
                "Hard": 4096,
                "Name": "nofile",
                "Soft": 4096
              }
            ]
          },
          "Image": "agent:v1",
          "Labels": {
            "airlock.generation": "3",
            "airlock.node": "node-a",
            "airlock.sandbox.id": "0192f0c4-7a4e-7cde-8b1a-3c5d7e9f0a1b",
            "team": "ml"
          },
          "NetworkDisabled": false,
          "NetworkingConfig": {
            "EndpointsConfig": {
              "airlock-sbx-0192f0c4-7a4e-7cde-8b1a-3c5d7e9f0a1b": {
                "IPAMConfig": {
                  "IPv4Address": "10.213.0.11"
                }
              }
            }
          },
          "OpenStdin": true,
          "StdinOnce": false,
          "User": "1000:1000",
          "WorkingDir": "/workspace"
        }"#]]
    .assert_eq(&pretty(&container_body(&spec, &placement(), RUNTIME)));
}

#[test]
fn hardening_holds_for_every_spec() {
    let home = Home::Tmpfs { size_mb: 8 };
    let specs = [
        spec(SandboxRequest {
            image: "c".into(),
            ..SandboxRequest::default()
        })
        .run_with(
            RunAs {
                uid: 1000,
                gid: 1000,
            },
            home,
        )
        .unwrap(),
        spec(SandboxRequest {
            image: "a".into(),
            ..SandboxRequest::default()
        }),
        spec(SandboxRequest {
            image: "b".into(),
            rootfs: RootFs::Writable,
            limits: LimitsRequest {
                disk_mb: Some(100),
                ..LimitsRequest::default()
            },
            ..SandboxRequest::default()
        }),
    ];
    for spec in specs {
        let body = container_body(&spec, &placement(), RUNTIME);
        let host = body.host_config.unwrap();
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(host.cap_add, Some(vec![]));
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.devices, Some(vec![]));
        assert_eq!(host.binds, Some(vec![]));
        // The runtime volume, read-only, is the only mount of a spec without mounts.
        assert_eq!(host.mounts, Some(vec![runtime::runtime_mount(RUNTIME)]));
        assert_eq!(body.entrypoint, Some(vec![runtime::INIT_PATH.to_owned()]));
        assert_eq!(
            (body.open_stdin, body.stdin_once, body.attach_stdin),
            (Some(true), Some(false), Some(true))
        );
        // Nothing per-run: only init's own settings.
        let env = body.env.clone().unwrap_or_default();
        assert!(
            env.iter().all(|e| e.starts_with("AIRLOCK_INIT_")),
            "{env:?}"
        );
        assert_eq!(host.memory, host.memory_swap);
        assert!(host.pids_limit.is_some_and(|p| p > 0));
        assert!(host.nano_cpus.is_some_and(|n| n > 0));
        assert_eq!(host.network_mode, Some(network_name(placement().id)));
        assert!(host.port_bindings.is_none());
        // The only name added: the proxy's gateway, at the proxy's address on this network.
        let gateway = format!("airlock.internal:{}", placement().subnet.proxy());
        assert_eq!(host.extra_hosts, Some(vec![gateway]));
        assert_ne!(body.user.as_deref(), Some("0:0"));
        if let Some(Home::Tmpfs { size_mb }) = spec.home() {
            let tmpfs = host.tmpfs.clone().unwrap_or_default();
            let want = format!("{HOME_TMPFS},size={size_mb}m,uid=1000,gid=1000");
            assert_eq!(tmpfs.get(HOME_DIR), Some(&want));
            assert!(env.iter().any(|e| e.contains(":/home/agent")), "{env:?}");
        }
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_SANDBOX_ID], placement().id.to_string());
        assert_eq!(labels[LABEL_GENERATION], "3");
        assert_eq!(labels[LABEL_NODE], "node-a");
        let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(endpoints.len(), 1, "the sandbox joins exactly one network");
    }
}

#[test]
fn controller_labels_win_over_nothing() {
    // User labels can never carry `airlock.*` (validation refuses them), so the controller's
    // labels are the only ones under that prefix.
    let spec = spec(SandboxRequest {
        image: "a".into(),
        labels: [("x".to_owned(), "y".to_owned())].into(),
        ..SandboxRequest::default()
    });
    let labels = container_body(&spec, &placement(), RUNTIME).labels.unwrap();
    let reserved: Vec<_> = labels
        .keys()
        .filter(|k| k.starts_with("airlock."))
        .collect();
    assert_eq!(reserved.len(), 3);
}
