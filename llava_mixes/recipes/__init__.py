"""Recipes: the recipe schema (a YAML file parsed once into a typed `Recipe`, read by `yaml_reader`), how it samples
(`sampling`: counts, factors, caps, shares by task), the shipped recipes, and how much
several built configs' pictures overlap (`source_overlap`) with its heatmap. A recipe's rows are mixed by the build
stage (`building.mixing`)."""

from llava_mixes.recipes.overlap import Overlap, format_overlap, source_overlap
from llava_mixes.recipes.recipe import Recipe, load_recipe, parse_recipe, shipped_recipes

__all__ = ["Overlap", "Recipe", "format_overlap", "load_recipe", "parse_recipe", "shipped_recipes", "source_overlap"]
