output "alb_url" {
  description = "Base URL of the public API (the orchestrator behind the ALB): https://<domain_name> with a certificate, http://<domain_name or the ALB's DNS name> without. Health: <alb_url>/healthz."
  value       = "${var.certificate_arn == null ? "http" : "https"}://${coalesce(var.domain_name, aws_lb.this.dns_name)}"
}

output "alb_dns_name" {
  description = "DNS name of the ALB (point a CNAME or alias record at it)."
  value       = aws_lb.this.dns_name
}

output "jobs_table_name" {
  description = "DynamoDB jobs table name (the orchestrator's JOBS_TABLE_NAME)."
  value       = aws_dynamodb_table.this.name
}

output "jobs_table_arn" {
  description = "DynamoDB jobs table ARN."
  value       = aws_dynamodb_table.this.arn
}

output "ecr_repository_urls" {
  description = "ECR repository URL per service (`orchestrator`, `worker`): push `<url>:<commit sha>`."
  value       = { for name, repo in aws_ecr_repository.this : name => repo.repository_url }
}

output "github_actions_role_arn" {
  description = "ARN of the role GitHub Actions assumes (aws-actions/configure-aws-credentials `role-to-assume`)."
  value       = aws_iam_role.github_actions.arn
}

output "cluster_name" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.this.name
}

output "service_names" {
  description = "ECS service name per component."
  value       = { for name, service in aws_ecs_service.this : name => service.name }
}

output "task_definition_families" {
  description = "ECS task-definition family per service."
  value       = { for name, td in aws_ecs_task_definition.this : name => td.family }
}

output "log_group_names" {
  description = "CloudWatch log group per service."
  value       = { for name, group in aws_cloudwatch_log_group.this : name => group.name }
}

output "worker_url" {
  description = "URL the orchestrator reaches the workers at (Cloud Map DNS inside the VPC)."
  value       = local.worker_url
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms notify, or null when alarm_topic_enabled is false."
  value       = one(aws_sns_topic.alarms[*].arn)
}

output "vpc_id" {
  description = "VPC the system runs in (created or given)."
  value       = local.vpc_id
}

output "worker_token_secret_arn" {
  description = "Secrets Manager secret holding WORKER_TOKEN (both services read it through their task definitions)."
  value       = aws_secretsmanager_secret.worker_token.arn
}

output "api_token_secret_arn" {
  description = "Secrets Manager secret holding API_TOKEN, which API clients send as `Authorization: Bearer <token>`; null when api_token_enabled is false."
  value       = one(aws_secretsmanager_secret.api_token[*].arn)
}

output "github_variables" {
  description = "The `gh variable set` commands that give this environment's GitHub environment the settings the deploy workflow reads (run them in a clone of the repository)."
  value = join("\n", [for name, value in {
    AWS_REGION              = var.region
    AWS_ROLE_ARN            = aws_iam_role.github_actions.arn
    ECS_CLUSTER             = aws_ecs_cluster.this.name
    ORCHESTRATOR_SERVICE    = aws_ecs_service.this["orchestrator"].name
    WORKER_SERVICE          = aws_ecs_service.this["worker"].name
    ORCHESTRATOR_REPOSITORY = aws_ecr_repository.this["orchestrator"].name
    WORKER_REPOSITORY       = aws_ecr_repository.this["worker"].name
    ALB_URL                 = var.certificate_arn == null ? "http://${aws_lb.this.dns_name}" : "https://${aws_lb.this.dns_name}"
  } : "gh variable set ${name} --env ${var.environment} --body '${value}'"])
}
