//! Authorization as kube-apiserver's `Node,RBAC`: users may do what RoleBindings and ClusterRoleBindings
//! grant them (kube's default ClusterRoles reconciled at start, `view`/`edit`/`admin` aggregated), nodes
//! what their own pods need, and a refusal is kube's 403 word for word. The review APIs answer `kubectl
//! auth can-i` and `kubectl auth whoami`.

mod common;
use common::Plane;
use std::time::Duration;

use serde_json::{Value, json};

/// A request as a client holding a certificate for `user` in `group`.
async fn as_user(
    client: &reqwest::Client,
    p: &Plane,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method.clone(), format!("{}{path}", p.base));
    if let Some(body) = body {
        let ct = if method == reqwest::Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        req = req.header("content-type", ct).body(body.to_string());
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

async fn admin(p: &Plane, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let (code, obj) = as_user(&p.http, p, method.clone(), path, body).await;
    assert!(code < 300, "{method} {path}: {code} {obj}");
    obj
}

/// Polls `check` until it holds (RBAC reads the informer caches, a moment behind a write).
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} never held");
}

#[tokio::test]
async fn a_user_bound_to_view_reads_but_cannot_write() {
    let p = Plane::start().await;
    let jane = p.client_as(Some(("jane", "developers")));
    let get = reqwest::Method::GET;

    // Nobody bound jane to anything: kube's Forbidden, word for word.
    let (code, status) = as_user(
        &jane,
        &p,
        get.clone(),
        "/api/v1/namespaces/default/pods",
        None,
    )
    .await;
    assert_eq!(code, 403, "{status}");
    assert_eq!(
        status["message"],
        r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default""#
    );
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(status["details"]["kind"], "pods");
    // Discovery is open to every authenticated user (system:discovery, system:basic-user).
    let (code, _) = as_user(&jane, &p, get.clone(), "/api", None).await;
    assert_eq!(code, 200);
    let (code, _) = as_user(&jane, &p, get.clone(), "/apis/apps/v1", None).await;
    assert_eq!(code, 200);

    // Bound to `view` in `default` (the group is enough): lists, but never creates.
    admin(
        &p,
        reqwest::Method::POST,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        Some(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "developers-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "developers"}]})),
    )
    .await;
    eventually("jane lists pods", || async {
        as_user(
            &jane,
            &p,
            get.clone(),
            "/api/v1/namespaces/default/pods",
            None,
        )
        .await
        .0 == 200
    })
    .await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "example/app:v1"}]}});
    let (code, status) = as_user(
        &jane,
        &p,
        reqwest::Method::POST,
        "/api/v1/namespaces/default/pods",
        Some(pod),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        status["message"],
        r#"pods is forbidden: User "jane" cannot create resource "pods" in API group "" in the namespace "default""#
    );
    // `view` reads no Secrets, and grants nothing in another namespace.
    let (code, _) = as_user(
        &jane,
        &p,
        get.clone(),
        "/api/v1/namespaces/default/secrets",
        None,
    )
    .await;
    assert_eq!(code, 403);
    let (code, status) = as_user(
        &jane,
        &p,
        get.clone(),
        "/api/v1/namespaces/kube-system/pods",
        None,
    )
    .await;
    assert_eq!(code, 403, "{status}");

    // The review APIs answer for jane herself.
    let (code, review) = as_user(
        &jane,
        &p,
        reqwest::Method::POST,
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        Some(json!({"spec": {"resourceAttributes":
            {"namespace": "default", "verb": "create", "resource": "pods"}}})),
    )
    .await;
    assert_eq!(code, 201, "{review}");
    assert_eq!(review["status"]["allowed"], false);
    let (_, review) = as_user(
        &jane,
        &p,
        reqwest::Method::POST,
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        Some(json!({"spec": {"resourceAttributes":
            {"namespace": "default", "verb": "watch", "resource": "deployments", "group": "apps"}}})),
    )
    .await;
    assert_eq!(review["status"]["allowed"], true, "{review}");
    let (code, whoami) = as_user(
        &jane,
        &p,
        reqwest::Method::POST,
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})),
    )
    .await;
    assert_eq!(code, 201, "{whoami}");
    assert_eq!(
        whoami["status"]["userInfo"],
        json!({"username": "jane", "groups": ["developers", "system:authenticated"]})
    );
    let (code, rules) = as_user(
        &jane,
        &p,
        reqwest::Method::POST,
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        Some(json!({"spec": {"namespace": "default"}})),
    )
    .await;
    assert_eq!(code, 201, "{rules}");
    let lists_pods = rules["status"]["resourceRules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| {
            r["resources"].as_array().unwrap().contains(&json!("pods"))
                && r["verbs"].as_array().unwrap().contains(&json!("list"))
        });
    assert!(lists_pods, "{rules}");
    p.stop().await;
}

#[tokio::test]
async fn default_cluster_roles_are_reconciled_and_aggregated() {
    let p = Plane::start().await;
    let get = reqwest::Method::GET;
    let view = admin(
        &p,
        get.clone(),
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/view",
        None,
    )
    .await;
    assert!(view["aggregationRule"].is_object(), "{view}");
    // The aggregation controller fills in the rules of the roles labelled aggregate-to-view.
    eventually("view has rules", || async {
        let view = admin(
            &p,
            get.clone(),
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/view",
            None,
        )
        .await;
        view["rules"].as_array().is_some_and(|r| !r.is_empty())
    })
    .await;
    // A role of one's own, labelled to aggregate into `view`, reaches `view`, `edit` and `admin`.
    admin(
        &p,
        reqwest::Method::POST,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        Some(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "widgets-view",
                "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
            "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}]}),
        ),
    )
    .await;
    for role in ["view", "edit", "admin"] {
        eventually(&format!("{role} has widgets"), || async {
            let obj = admin(
                &p,
                get.clone(),
                &format!("/apis/rbac.authorization.k8s.io/v1/clusterroles/{role}"),
                None,
            )
            .await;
            obj["rules"].to_string().contains("widgets")
        })
        .await;
    }
    for name in ["cluster-admin", "system:node-proxier", "system:discovery"] {
        admin(
            &p,
            get.clone(),
            &format!("/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"),
            None,
        )
        .await;
    }
    // A restart reconciles without losing what users added to a default role.
    let p = p.restart().await;
    let view = admin(
        &p,
        get.clone(),
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/view",
        None,
    )
    .await;
    assert!(view["rules"].to_string().contains("widgets"), "{view}");
    p.stop().await;
}

#[tokio::test]
async fn a_node_reads_and_writes_only_what_its_own_pods_need() {
    let p = Plane::start().await;
    let post = reqwest::Method::POST;
    for node in ["a", "b"] {
        admin(
            &p,
            post.clone(),
            "/api/v1/nodes",
            Some(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})),
        )
        .await;
        admin(
            &p,
            post.clone(),
            "/api/v1/namespaces/default/secrets",
            Some(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("{node}-secret")}, "data": {"k": "dg=="}})),
        )
        .await;
        admin(
            &p,
            post.clone(),
            "/api/v1/namespaces/default/pods",
            Some(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("{node}-pod")},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "example/app:v1",
                    "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": format!("{node}-secret"), "key": "k"}}}]}]}})),
        )
        .await;
    }
    let node_a = p.client_as(Some(("system:node:a", "system:nodes")));
    let get = reqwest::Method::GET;
    eventually("node a reads its pod's secret", || async {
        as_user(
            &node_a,
            &p,
            get.clone(),
            "/api/v1/namespaces/default/secrets/a-secret",
            None,
        )
        .await
        .0 == 200
    })
    .await;
    let (code, status) = as_user(
        &node_a,
        &p,
        get.clone(),
        "/api/v1/namespaces/default/secrets/b-secret",
        None,
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        status["message"],
        "secrets \"b-secret\" is forbidden: User \"system:node:a\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\": no relationship found between node 'a' and this object"
    );
    // A watch of the one secret its pod uses, as the node's reflector does; never all of them.
    let (code, _) = as_user(
        &node_a,
        &p,
        get.clone(),
        "/api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3Da-secret",
        None,
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = as_user(&node_a, &p, get.clone(), "/api/v1/secrets", None).await;
    assert_eq!(code, 403);
    // Its own pods, by the spec.nodeName field selector.
    let (code, pods) = as_user(
        &node_a,
        &p,
        get.clone(),
        "/api/v1/pods?fieldSelector=spec.nodeName%3Da",
        None,
    )
    .await;
    assert_eq!(code, 200, "{pods}");
    let (code, _) = as_user(&node_a, &p, get.clone(), "/api/v1/pods", None).await;
    assert_eq!(code, 403);
    // NodeRestriction: its own Node, not another's.
    let patch = reqwest::Method::PATCH;
    let label = json!({"metadata": {"labels": {"x": "y"}}});
    let (code, status) = as_user(
        &node_a,
        &p,
        patch.clone(),
        "/api/v1/nodes/b",
        Some(label.clone()),
    )
    .await;
    assert_eq!(code, 403, "{status}");
    assert_eq!(
        status["message"],
        r#"nodes "b" is forbidden: node "a" is not allowed to modify node "b""#
    );
    let (code, status) = as_user(&node_a, &p, patch.clone(), "/api/v1/nodes/a", Some(label)).await;
    assert_eq!(code, 200, "{status}");
    // Its own pods' status only.
    let ready = json!({"status": {"phase": "Running"}});
    let (code, _) = as_user(
        &node_a,
        &p,
        patch.clone(),
        "/api/v1/namespaces/default/pods/b-pod/status",
        Some(ready.clone()),
    )
    .await;
    assert_eq!(code, 403);
    let (code, status) = as_user(
        &node_a,
        &p,
        patch,
        "/api/v1/namespaces/default/pods/a-pod/status",
        Some(ready),
    )
    .await;
    assert_eq!(code, 200, "{status}");
    p.stop().await;
}

/// A request with `token` as its bearer token and no client certificate.
async fn with_token(
    p: &Plane,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = p
        .client_as(None)
        .request(method, format!("{}{path}", p.base))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn service_account_tokens_authenticate_while_what_they_name_exists() {
    let p = Plane::start().await;
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    admin(
        &p,
        post.clone(),
        "/api/v1/namespaces/default/serviceaccounts",
        Some(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}})),
    )
    .await;
    admin(
        &p,
        post.clone(),
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        Some(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "reader-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}]})),
    )
    .await;
    // kube's TokenRequest: a lifetime under ten minutes is refused, the default is an hour.
    let (code, status) = as_user(
        &p.http,
        &p,
        post.clone(),
        "/api/v1/namespaces/default/serviceaccounts/reader/token",
        Some(
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 60}}),
        ),
    )
    .await;
    assert_eq!(code, 422, "{status}");
    let issued = admin(
        &p,
        post.clone(),
        "/api/v1/namespaces/default/serviceaccounts/reader/token",
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})),
    )
    .await;
    assert_eq!(issued["kind"], "TokenRequest");
    assert_eq!(issued["spec"]["expirationSeconds"], 3600);
    let token = issued["status"]["token"].as_str().unwrap().to_string();

    eventually("the token lists pods", || async {
        with_token(
            &p,
            &token,
            get.clone(),
            "/api/v1/namespaces/default/pods",
            None,
        )
        .await
        .0 == 200
    })
    .await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "example/app:v1"}]}});
    let (code, status) = with_token(
        &p,
        &token,
        post.clone(),
        "/api/v1/namespaces/default/pods",
        Some(pod),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        status["message"],
        r#"pods is forbidden: User "system:serviceaccount:default:reader" cannot create resource "pods" in API group "" in the namespace "default""#
    );
    let (_, whoami) = with_token(
        &p,
        &token,
        post.clone(),
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some(json!({})),
    )
    .await;
    assert_eq!(
        whoami["status"]["userInfo"]["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );
    // An altered or foreign token is 401, even on the paths anonymous requests may use.
    let forged = format!("{}x", &token[..token.len() - 1]);
    let (code, _) = with_token(
        &p,
        &forged,
        get.clone(),
        "/api/v1/namespaces/default/pods",
        None,
    )
    .await;
    assert_eq!(code, 401);
    let (code, _) = with_token(&p, "not-a-token", get.clone(), "/healthz", None).await;
    assert_eq!(code, 401);

    // A token bound to a pod dies with the pod.
    admin(
        &p,
        post.clone(),
        "/api/v1/namespaces/default/pods",
        Some(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bound"},
            "spec": {"serviceAccountName": "reader", "containers": [{"name": "c", "image": "example/app:v1"}]}})),
    )
    .await;
    let pod = admin(
        &p,
        get.clone(),
        "/api/v1/namespaces/default/pods/bound",
        None,
    )
    .await;
    let bound = admin(
        &p,
        post.clone(),
        "/api/v1/namespaces/default/serviceaccounts/reader/token",
        Some(
            json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
            "name": "bound", "uid": pod["metadata"]["uid"]}}}),
        ),
    )
    .await;
    let bound = bound["status"]["token"].as_str().unwrap().to_string();
    let (code, _) = with_token(
        &p,
        &bound,
        get.clone(),
        "/api/v1/namespaces/default/pods",
        None,
    )
    .await;
    assert_eq!(code, 200);
    admin(
        &p,
        reqwest::Method::DELETE,
        "/api/v1/namespaces/default/pods/bound?gracePeriodSeconds=0",
        None,
    )
    .await;
    let (code, _) = with_token(
        &p,
        &bound,
        get.clone(),
        "/api/v1/namespaces/default/pods",
        None,
    )
    .await;
    assert_eq!(code, 401);
    // And every token of the account with the account.
    admin(
        &p,
        reqwest::Method::DELETE,
        "/api/v1/namespaces/default/serviceaccounts/reader",
        None,
    )
    .await;
    let (code, _) = with_token(&p, &token, get, "/api/v1/namespaces/default/pods", None).await;
    assert_eq!(code, 401);
    p.stop().await;
}

/// kube's RBAC escalation checks: a namespace admin may write Roles and RoleBindings granting what it holds,
/// never more (a Role with a permission it lacks, a binding to cluster-admin), with kube's 403; `bind` on a role
/// lets it bind that role all the same; system:masters may write anything.
#[tokio::test]
async fn nobody_grants_what_they_do_not_hold() {
    let p = Plane::start().await;
    let post = reqwest::Method::POST;
    admin(
        &p,
        post.clone(),
        "/api/v1/namespaces",
        Some(json!({"metadata": {"name": "team"}})),
    )
    .await;
    admin(
        &p,
        post.clone(),
        "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings",
        Some(json!({"metadata": {"name": "alice-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}]})),
    )
    .await;
    let alice = p.client_as(Some(("alice", "people")));
    let roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/team/roles";
    let bindings = "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings";
    let role = |name: &str, resource: &str| {
        json!({"metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": [resource], "verbs": ["get", "list"]}]})
    };
    let binding = |name: &str, kind: &str, role: &str| {
        json!({"metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "bob"}]})
    };

    // What admin holds in team may be granted (once the caches have alice's binding).
    eventually("alice may create a Role of what she holds", || async {
        as_user(
            &alice,
            &p,
            post.clone(),
            roles,
            Some(role("pod-reader", "pods")),
        )
        .await
        .0 == 201
    })
    .await;
    let (code, status) = as_user(
        &alice,
        &p,
        post.clone(),
        bindings,
        Some(binding("bob-reads", "Role", "pod-reader")),
    )
    .await;
    assert_eq!(code, 201, "{status}");

    // Nodes are cluster-scoped: admin in team does not hold them. kube's message, word for word.
    let (code, status) = as_user(
        &alice,
        &p,
        post.clone(),
        roles,
        Some(role("node-reader", "nodes")),
    )
    .await;
    assert_eq!(code, 403, "{status}");
    assert_eq!(
        status["message"],
        "roles.rbac.authorization.k8s.io \"node-reader\" is forbidden: user \"alice\" (groups=[\"people\" \
         \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n\
         {APIGroups:[\"\"], Resources:[\"nodes\"], Verbs:[\"get\" \"list\"]}"
    );
    assert_eq!(status["reason"], "Forbidden");
    let (code, status) = as_user(
        &alice,
        &p,
        post.clone(),
        bindings,
        Some(binding("bob-root", "ClusterRole", "cluster-admin")),
    )
    .await;
    assert_eq!(code, 403, "{status}");
    assert!(
        status["message"].as_str().unwrap_or_default().starts_with(
            "rolebindings.rbac.authorization.k8s.io \"bob-root\" is forbidden: user \"alice\""
        ),
        "{status}"
    );
    // Nothing refused was stored.
    let (code, _) = as_user(
        &p.http,
        &p,
        reqwest::Method::GET,
        &format!("{bindings}/bob-root"),
        None,
    )
    .await;
    assert_eq!(code, 404);
    // An update that widens a Role is refused as a create is.
    let (code, status) = as_user(
        &alice,
        &p,
        reqwest::Method::PUT,
        &format!("{roles}/pod-reader"),
        Some(role("pod-reader", "nodes")),
    )
    .await;
    assert_eq!(code, 403, "{status}");

    // `bind` on cluster-admin, granted by the cluster's admin, lets alice bind it without holding it.
    admin(
        &p,
        post.clone(),
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        Some(json!({"metadata": {"name": "bind-cluster-admin"},
            "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                       "verbs": ["bind"], "resourceNames": ["cluster-admin"]}]})),
    )
    .await;
    admin(
        &p,
        post.clone(),
        bindings,
        Some(json!({"metadata": {"name": "alice-binds"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "bind-cluster-admin"},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}]})),
    )
    .await;
    eventually("alice may bind cluster-admin in team", || async {
        as_user(
            &alice,
            &p,
            post.clone(),
            bindings,
            Some(binding("bob-root", "ClusterRole", "cluster-admin")),
        )
        .await
        .0 == 201
    })
    .await;
}

/// `herd node` runs its proxy with the node's identity: nodes hold the proxier roles (list and watch Services,
/// EndpointSlices; herd's Service `Listening` status), as `system:kube-proxy` does.
#[tokio::test]
async fn a_nodes_identity_serves_its_proxy() {
    let p = Plane::start().await;
    let node = p.client_as(Some(("system:node:n1", "system:nodes")));
    admin(
        &p,
        reqwest::Method::POST,
        "/api/v1/namespaces/default/services",
        Some(json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}})),
    )
    .await;
    for path in [
        "/api/v1/services",
        "/apis/discovery.k8s.io/v1/endpointslices",
    ] {
        let (code, body) = as_user(&node, &p, reqwest::Method::GET, path, None).await;
        assert_eq!(code, 200, "{path}: {body}");
    }
    let (code, body) = as_user(
        &node,
        &p,
        reqwest::Method::PATCH,
        "/api/v1/namespaces/default/services/web/status",
        Some(json!({"status": {"conditions": []}})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // Not the Service itself.
    let (code, _) = as_user(
        &node,
        &p,
        reqwest::Method::PATCH,
        "/api/v1/namespaces/default/services/web",
        Some(json!({"metadata": {"labels": {"a": "b"}}})),
    )
    .await;
    assert_eq!(code, 403);
}

/// A JSON patch (RFC 6902) as a client.
async fn json_patch(client: &reqwest::Client, p: &Plane, path: &str, patch: Value) -> (u16, Value) {
    let resp = client
        .patch(format!("{}{path}", p.base))
        .header("content-type", "application/json-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_proxy_may_only_wake_a_deployment_that_scales_to_zero() {
    let p = Plane::start().await;
    let deployment = |name: &str, annotations: Value| {
        json!({"metadata": {"name": name, "annotations": annotations},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    };
    let deployments = "/apis/apps/v1/namespaces/default/deployments";
    for d in [
        deployment("web", json!({"autoscaling.herd.dev/idle-timeout": "30s"})),
        deployment("plain", json!({})),
    ] {
        admin(&p, reqwest::Method::POST, deployments, Some(d)).await;
    }
    let wake = json!([
        {"op": "test", "path": "/spec/replicas", "value": 0},
        {"op": "replace", "path": "/spec/replicas", "value": 1},
    ]);
    let proxy = p.client_as(Some(("system:kube-proxy", "system:authenticated")));
    let node = p.client_as(Some(("system:node:n1", "system:nodes")));
    // The wake-up: 0 → 1 of a Deployment that scales to zero, with its precondition.
    let (code, scale) = json_patch(
        &proxy,
        &p,
        &format!("{deployments}/web/scale"),
        wake.clone(),
    )
    .await;
    assert_eq!(code, 200, "{scale}");
    assert_eq!(scale["spec"]["replicas"], 1);
    // Woken already (by another node's proxy): the precondition fails, nothing changes.
    let (code, status) =
        json_patch(&node, &p, &format!("{deployments}/web/scale"), wake.clone()).await;
    assert_eq!(code, 422, "{status}");
    // Any other change of its replicas is the controller's, not a proxy's.
    for (client, replicas) in [(&proxy, 5), (&node, 0)] {
        let (code, status) = as_user(
            client,
            &p,
            reqwest::Method::PATCH,
            &format!("{deployments}/web/scale"),
            Some(json!({"spec": {"replicas": replicas}})),
        )
        .await;
        assert_eq!(code, 403, "{status}");
        assert_eq!(
            status["message"],
            r#"deployments.apps "web" is forbidden: an activator may only scale a Deployment annotated autoscaling.herd.dev/idle-timeout from 0 to 1 replica"#
        );
    }
    // Nor a Deployment that does not scale to zero.
    let (code, status) = json_patch(
        &node,
        &p,
        &format!("{deployments}/plain/scale"),
        wake.clone(),
    )
    .await;
    assert_eq!(code, 403, "{status}");
    // RBAC grants the patch of a Deployment's scale and the pods' watch, nothing more.
    let refused = [
        (
            reqwest::Method::PATCH,
            format!("{deployments}/web"),
            Some(json!({"spec": {"replicas": 1}})),
        ),
        (
            reqwest::Method::PUT,
            format!("{deployments}/web/scale"),
            Some(json!({"spec": {"replicas": 1}})),
        ),
        (
            reqwest::Method::GET,
            format!("{deployments}/web/scale"),
            None,
        ),
        (
            reqwest::Method::PATCH,
            "/apis/apps/v1/namespaces/default/replicasets/web/scale".to_string(),
            Some(json!({"spec": {"replicas": 1}})),
        ),
    ];
    for (method, path, body) in refused {
        let (code, status) = as_user(&proxy, &p, method.clone(), &path, body).await;
        assert_eq!(code, 403, "{method} {path}: {status}");
    }
    // The proxy of `herd up` watches a waking Service's pods; a node still lists only its own.
    for (client, allowed) in [(&proxy, 200), (&node, 403)] {
        let (code, body) = as_user(
            client,
            &p,
            reqwest::Method::GET,
            "/api/v1/pods?labelSelector=app%3Dweb",
            None,
        )
        .await;
        assert_eq!(code, allowed, "{body}");
    }
    // An administrator is not an activator.
    let scale = admin(
        &p,
        reqwest::Method::PATCH,
        &format!("{deployments}/web/scale"),
        Some(json!({"spec": {"replicas": 3}})),
    )
    .await;
    assert_eq!(scale["spec"]["replicas"], 3);
    p.stop().await;
}
