//! How a Service port reaches a pod: the one resolution the Endpoints/EndpointSlice controllers and the
//! proxy's activator (which forwards to a Ready pod before its EndpointSlice lists it) share.

use k8s_openapi::api::core::v1::ServicePort;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// The pod port a Service port sends to: its `targetPort` number, a named container port of `pod`, or
/// (no `targetPort`) the Service port itself. `None`: the pod has no container port of that name.
pub fn resolve_target_port(pod: &Value, svc_port: &ServicePort) -> Option<i64> {
    match &svc_port.target_port {
        Some(IntOrString::Int(n)) => Some(i64::from(*n)),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse() {
                return Some(n);
            }
            pod.pointer("/spec/containers")?
                .as_array()?
                .iter()
                .flat_map(|c| {
                    c.get("ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                })
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| p["containerPort"].as_i64())
        }
        None => Some(i64::from(svc_port.port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_names_and_the_service_port() {
        let pod =
            json!({"spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]}});
        let port = |p: Value| -> ServicePort { serde_json::from_value(p).expect("port") };
        assert_eq!(
            resolve_target_port(&pod, &port(json!({"port": 80, "targetPort": 9090}))),
            Some(9090)
        );
        assert_eq!(
            resolve_target_port(&pod, &port(json!({"port": 80, "targetPort": "http"}))),
            Some(8080)
        );
        assert_eq!(
            resolve_target_port(&pod, &port(json!({"port": 80, "targetPort": "grpc"}))),
            None
        );
        assert_eq!(
            resolve_target_port(&pod, &port(json!({"port": 80}))),
            Some(80)
        );
    }
}
