# Cloud Map: the worker tasks register as worker.<project>-<environment>.local (A records),
# which is the orchestrator's WORKER_URL.

resource "aws_service_discovery_private_dns_namespace" "this" {
  name        = local.namespace_name
  description = "Ghost Engine service discovery (${var.environment})"
  vpc         = local.vpc_id
}

resource "aws_service_discovery_service" "this" {
  name = "worker"

  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.this.id
    routing_policy = "MULTIVALUE"

    dns_records {
      type = "A"
      ttl  = local.worker_dns_ttl # Short: a replaced worker task must drop out of answers quickly.
    }
  }

  # ECS reports task health to Cloud Map, so only healthy workers are answered.
  health_check_custom_config {
    failure_threshold = 1
  }
}
