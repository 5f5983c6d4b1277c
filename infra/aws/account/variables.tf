variable "region" {
  type        = string
  description = "Region of the provider (IAM is global; the region only picks the API endpoint)."
  default     = "us-east-1"
}

variable "tags" {
  type        = map(string)
  description = "Extra tags on every resource (ManagedBy and Stack are always set)."
  default     = {}
}

variable "github_oidc_provider_enabled" {
  type        = bool
  description = "Create the account's GitHub OIDC provider (token.actions.githubusercontent.com). false when it exists and is managed elsewhere."
  default     = true
}

variable "ecs_service_linked_role_enabled" {
  type        = bool
  description = "Create the ECS service-linked role AWSServiceRoleForECS. true for a fresh account; false when the account has used ECS before (the role exists and a second create fails)."
  default     = true
}
