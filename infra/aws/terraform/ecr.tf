# One repository per service. Deploys reference images by commit-SHA tag, so tags are IMMUTABLE
# by default: a SHA tag can never be re-pointed at a different image.
#
# About `latest`: in an IMMUTABLE repository a tag cannot be overwritten, so pushing `latest`
# on every deploy fails from the second deploy on. AWS's IMMUTABLE_WITH_EXCLUSION (mutable
# exceptions for chosen tags) needs `image_tag_mutability_exclusion_filter`, which provider 5.100
# does not have (it arrived in provider 6.x). So the pipeline must not push `latest` into these
# repositories while they are IMMUTABLE; nothing in the deploy reads `latest`. Whoever wants a
# moving `latest` sets ecr_image_tag_mutability = "MUTABLE" and accepts that tags can move.

resource "aws_ecr_repository" "this" {
  for_each = local.services

  name                 = local.qualified_names[each.key]
  image_tag_mutability = var.ecr_image_tag_mutability
  force_delete         = var.ecr_force_delete_enabled

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS" # The AWS-managed aws/ecr key.
  }
}

resource "aws_ecr_lifecycle_policy" "this" {
  for_each = local.services

  repository = aws_ecr_repository.this[each.key].name
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Expire untagged images (failed or superseded pushes)"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = var.ecr_untagged_expiry_days
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the most recent images: the rollback window"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = var.ecr_keep_image_count
        }
        action = { type = "expire" }
      },
    ]
  })
}
