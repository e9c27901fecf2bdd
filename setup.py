"""xtune: fine-tune BERT-family encoders for (multi-label) text classification with Keras 3."""

from setuptools import find_packages, setup

setup(
    name="xtune",
    version="0.1.0",
    description="Fine-tune BERT-family encoders for multi-label text classification (Keras 3)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["xtune", "xtune.*"]),
    python_requires=">=3.11,<3.12",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tensorflow-text>=2.21,<2.22",
        "keras>=3.15,<3.16",
        "keras-hub>=0.32,<0.33",
        "safetensors>=0.4,<1",
        "numpy>=1.26,<3",
        "pandas>=2.2,<4",
        "scikit-learn>=1.5,<2",
        "scipy>=1.13,<2",
        "jieba==0.42.1",
        "pyyaml>=6,<7",
        "openpyxl>=3.1,<4",
        "matplotlib>=3.8,<4",
        "iterative-stratification>=0.1.9,<0.2",
    ],
    extras_require={"dev": ["pytest>=8,<10", "ruff>=0.6", "hypothesis>=6.100"]},
    entry_points={"console_scripts": ["xtune=xtune.cli:main"]},
)
