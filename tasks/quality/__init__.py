"""Quality filtering: Gopher, C4 and FineWeb rule families, fastText language ID, a trainable
fastText quality classifier, and personal data (e-mail, IP addresses, phone numbers) counted,
redacted or dropped (:mod:`tasks.quality.pii`).

Scores live apart from decisions (Dolma's attributes): :func:`score_documents` computes every rule
value per document, :func:`decide` turns values (fresh or stored) into drop reasons under any
thresholds, and :func:`family_fingerprints` tells which families need re-scoring after a config
change.
"""

from refinery.tasks.quality.classifier import (
    ClassifierReport,
    QualityClassifier,
    classifier_attributes,
    document_keys,
    exponential_noise,
    pareto_keep,
    read_text_source,
    train_classifier,
)
from refinery.tasks.quality.config import (
    C4Config,
    ClassifierConfig,
    FineWebConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
    GuardConfig,
    LangIdConfig,
    PiiConfig,
    QualityConfig,
)
from refinery.tasks.quality.langid import LanguageIdentifier, LanguagePrediction, default_model_path
from refinery.tasks.quality.rules import (
    ATTRIBUTES_VERSION,
    FAMILIES,
    RULES,
    Rule,
    active_rules,
    decide,
    family_fingerprints,
    required_attributes,
    rule_thresholds,
)
from refinery.tasks.quality.score import attribute_names, score_documents

__all__ = [
    "ATTRIBUTES_VERSION",
    "C4Config",
    "ClassifierConfig",
    "ClassifierReport",
    "FAMILIES",
    "FineWebConfig",
    "GopherQualityConfig",
    "GopherRepetitionConfig",
    "GuardConfig",
    "LangIdConfig",
    "LanguageIdentifier",
    "LanguagePrediction",
    "PiiConfig",
    "QualityClassifier",
    "QualityConfig",
    "RULES",
    "Rule",
    "active_rules",
    "attribute_names",
    "classifier_attributes",
    "decide",
    "default_model_path",
    "document_keys",
    "exponential_noise",
    "family_fingerprints",
    "pareto_keep",
    "read_text_source",
    "required_attributes",
    "rule_thresholds",
    "score_documents",
    "train_classifier",
]
