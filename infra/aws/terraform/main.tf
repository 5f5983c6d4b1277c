# Ghost Engine: the whole AWS system for one environment (VPC, ALB, ECS Fargate services,
# DynamoDB job table, ECR, logs, alarms, and the GitHub Actions deploy role).

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(
      {
        Project     = var.project
        Environment = var.environment
        ManagedBy   = "terraform"
      },
      var.tags,
    )
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  cluster_name    = "${var.project}-cluster-${var.environment}"
  jobs_table_name = coalesce(var.jobs_table_name, "${var.project}-jobs-${var.environment}")
  active_index    = "active-by-lease"
  created_index   = "jobs-by-created"
  state_index     = "jobs-by-state"
  namespace_name  = "${var.project}-${var.environment}.local"
  worker_dns_name = "worker.${local.namespace_name}"
  worker_port     = 8081
  worker_url      = "http://${local.worker_dns_name}:${local.worker_port}"
  # ECS takes a stopping worker out of Cloud Map without waiting for the record's TTL, so
  # orchestrators may dial it for up to TTL seconds (plus their resolver's caching) after
  # SIGTERM: the worker keeps accepting for TTL + 5 s (SHUTDOWN_DELAY_SECONDS), then finishes
  # what it accepted within SHUTDOWN_GRACE_SECONDS, all inside its stopTimeout.
  worker_dns_ttl        = 10
  worker_shutdown_delay = local.worker_dns_ttl + 5
  worker_shutdown_grace = 25
  worker_stop_timeout   = local.worker_shutdown_delay + local.worker_shutdown_grace + 5

  # The two ECS services. They run the same image; the command picks the service.
  # Keys are the ECS service names and the container names.
  services = {
    orchestrator = {
      port          = 8080
      cpu           = var.orchestrator_cpu
      memory        = var.orchestrator_memory
      desired_count = var.orchestrator_desired_count
      stop_timeout  = 30 # SIGTERM (after the ALB's deregistration delay), then 30 s for in-flight requests
      environment = {
        HOST              = "0.0.0.0"
        PORT              = "8080"
        WORKER_URL        = local.worker_url
        JOBS_TABLE_NAME   = local.jobs_table_name
        AWS_REGION        = var.region
        LOG_LEVEL         = var.log_level
        ENVIRONMENT       = var.environment
        METRICS_NAMESPACE = var.metrics_namespace
      }
      # Secrets Manager ARNs; ECS puts each value in the variable when the task starts.
      secrets = merge(
        { WORKER_TOKEN = aws_secretsmanager_secret.worker_token.arn },
        var.api_token_enabled ? { API_TOKEN = aws_secretsmanager_secret.api_token[0].arn } : {},
      )
    }
    worker = {
      port          = local.worker_port
      cpu           = var.worker_cpu
      memory        = var.worker_memory
      desired_count = var.worker_desired_count
      stop_timeout  = local.worker_stop_timeout
      # The worker publishes no metrics, so no ENVIRONMENT or METRICS_NAMESPACE.
      environment = {
        HOST                   = "0.0.0.0"
        PORT                   = tostring(local.worker_port)
        LOG_LEVEL              = var.log_level
        SHUTDOWN_DELAY_SECONDS = tostring(local.worker_shutdown_delay)
        SHUTDOWN_GRACE_SECONDS = tostring(local.worker_shutdown_grace)
      }
      secrets = { WORKER_TOKEN = aws_secretsmanager_secret.worker_token.arn }
    }
  }

  # `<project>-<service>-<environment>`: task-definition families, ECR repositories, log groups.
  qualified_names = { for name, _ in local.services : name => "${var.project}-${name}-${var.environment}" }
}
