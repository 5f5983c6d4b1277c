# ECS service auto scaling: each service between its environment's min and max task counts.
#
# orchestrator: two target-tracking policies; ECS scales out when either is above its target
#   and in only when both are below: ALB requests per task (the HTTP load), and the dispatch
#   threads in use (DispatchSlotsBusyPercent: a job runs on a worker while it holds one of the
#   orchestrator's MAX_CONCURRENT_JOBS threads, so the jobs in flight are bounded per task).
# worker: jobs running on workers per worker task, from the orchestrators' JobsRunning (EMF,
#   metrics.LoadMetrics, every 15 s): average per orchestrator x orchestrator tasks / worker
#   tasks (Container Insights' RunningTaskCount), kept near worker_jobs_per_task_target.

locals {
  scaling = {
    orchestrator = { min = var.orchestrator_min_count, max = var.orchestrator_max_count }
    worker       = { min = var.worker_min_count, max = var.worker_max_count }
  }
  metric_dimensions = { Service = "orchestrator", Environment = var.environment }
}

resource "aws_appautoscaling_target" "this" {
  for_each = var.autoscaling_enabled ? local.scaling : {}

  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.this[each.key].name}"
  min_capacity       = each.value.min
  max_capacity       = each.value.max
}

resource "aws_appautoscaling_policy" "orchestrator_requests" {
  count = var.autoscaling_enabled ? 1 : 0

  name               = "${var.project}-orchestrator-requests-${var.environment}"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this["orchestrator"].service_namespace
  scalable_dimension = aws_appautoscaling_target.this["orchestrator"].scalable_dimension
  resource_id        = aws_appautoscaling_target.this["orchestrator"].resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.orchestrator_requests_per_task_target
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${aws_lb.this.arn_suffix}/${aws_lb_target_group.orchestrator.arn_suffix}"
    }
  }
}

resource "aws_appautoscaling_policy" "orchestrator_dispatch" {
  count = var.autoscaling_enabled ? 1 : 0

  name               = "${var.project}-orchestrator-dispatch-${var.environment}"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this["orchestrator"].service_namespace
  scalable_dimension = aws_appautoscaling_target.this["orchestrator"].scalable_dimension
  resource_id        = aws_appautoscaling_target.this["orchestrator"].resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.orchestrator_dispatch_busy_target_percent
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    customized_metric_specification {
      metric_name = "DispatchSlotsBusyPercent"
      namespace   = var.metrics_namespace
      statistic   = "Average"
      unit        = "Percent"

      dynamic "dimensions" {
        for_each = local.metric_dimensions

        content {
          name  = dimensions.key
          value = dimensions.value
        }
      }
    }
  }
}

resource "aws_appautoscaling_policy" "worker_jobs" {
  count = var.autoscaling_enabled ? 1 : 0

  name               = "${var.project}-worker-jobs-${var.environment}"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this["worker"].service_namespace
  scalable_dimension = aws_appautoscaling_target.this["worker"].scalable_dimension
  resource_id        = aws_appautoscaling_target.this["worker"].resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.worker_jobs_per_task_target
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    customized_metric_specification {
      metrics {
        id          = "running"
        return_data = false

        metric_stat {
          stat = "Average"

          metric {
            namespace   = var.metrics_namespace
            metric_name = "JobsRunning"

            dynamic "dimensions" {
              for_each = local.metric_dimensions

              content {
                name  = dimensions.key
                value = dimensions.value
              }
            }
          }
        }
      }

      dynamic "metrics" {
        for_each = ["orchestrator", "worker"]

        content {
          id          = "${metrics.value}s"
          return_data = false

          metric_stat {
            stat = "Average"

            metric {
              namespace   = "ECS/ContainerInsights"
              metric_name = "RunningTaskCount"

              dimensions {
                name  = "ClusterName"
                value = aws_ecs_cluster.this.name
              }

              dimensions {
                name  = "ServiceName"
                value = aws_ecs_service.this[metrics.value].name
              }
            }
          }
        }
      }

      metrics {
        id          = "per_worker"
        label       = "jobs running per worker task"
        expression  = "running * orchestrators / MAX([workers, 1])"
        return_data = true
      }
    }
  }
}
