"""Tests for infra/ (Bicep for `azd up`), azure.yaml and the azd hooks; no Azure needed."""
