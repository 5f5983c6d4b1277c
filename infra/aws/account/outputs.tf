output "github_oidc_provider_arn" {
  description = "ARN of the GitHub OIDC provider (infra/aws/terraform derives the same ARN by default), or null when github_oidc_provider_enabled is false."
  value       = one(aws_iam_openid_connect_provider.github[*].arn)
}

output "ecs_service_linked_role_arn" {
  description = "ARN of AWSServiceRoleForECS, or null when ecs_service_linked_role_enabled is false."
  value       = one(aws_iam_service_linked_role.ecs[*].arn)
}
