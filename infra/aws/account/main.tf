# Account-wide prerequisites of every Ghost Engine environment, applied once per AWS account
# before the first `infra/aws/terraform` apply. Each resource here is shared by all stacks (and,
# for the OIDC provider, by every repository that deploys from GitHub), so none belongs to one
# environment's state, and each is protected: a `terraform destroy` here fails instead of
# cutting every other stack off. To retire one on purpose, delete it by hand.

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ ManagedBy = "terraform", Stack = "account" }, var.tags)
  }
}

# GitHub's OIDC issuer: an account holds one provider per URL. Already there (created by hand or
# another tool)? `terraform import 'aws_iam_openid_connect_provider.github[0]' <arn>`, or set
# github_oidc_provider_enabled = false.
resource "aws_iam_openid_connect_provider" "github" {
  count = var.github_oidc_provider_enabled ? 1 : 0

  url            = "https://token.actions.githubusercontent.com"
  client_id_list = ["sts.amazonaws.com"]
  # No thumbprint_list: IAM trusts GitHub's OIDC endpoint through its root CA library.

  lifecycle {
    prevent_destroy = true
  }
}

# ECS creates AWSServiceRoleForECS on first use in the console, not always through the API: in
# a fresh account the first CreateService can fail with "Unable to assume the service linked
# role". Creating it when it already exists fails too ("has been taken in this account"): then
# set ecs_service_linked_role_enabled = false.
resource "aws_iam_service_linked_role" "ecs" {
  count = var.ecs_service_linked_role_enabled ? 1 : 0

  aws_service_name = "ecs.amazonaws.com"
  description      = "ECS manages load balancers, Cloud Map and ENIs for the account's services"

  lifecycle {
    prevent_destroy = true
  }
}
