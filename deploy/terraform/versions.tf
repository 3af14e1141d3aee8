terraform {
  # Resource preconditions and the syntax used here are from Terraform 1.5 and later.
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.30.0, < 6.0.0"
    }
  }
}
