/** `psm audit`: persona audits of any model a provider reaches (see docs/serve-and-audit.md). */
export { runAudit, readJournal, type AuditOptions } from './run.ts';
export {
  loadEmQuestions,
  loadBatteryFile,
  worldBatteryItems,
  chatFromPrompt,
  EM_QUESTIONS_PATH,
  type EmQuestion,
  type BatteryItem,
} from './items.ts';
export {
  ALIGNED_PROMPT,
  COHERENT_PROMPT,
  CHOICE_PROMPT,
  MIN_NUMBER_MASS,
  aggregateNumberLogprobs,
  parseScoreText,
  judgeScore,
  judgeChoice,
  fillTemplate,
  type JudgeScore,
  type JudgeChoice,
} from './judge.ts';
export {
  ALIGNMENT_THRESHOLD,
  COHERENCE_THRESHOLD,
  classifyEm,
  compareReports,
  renderComparisonMarkdown,
  renderReportMarkdown,
  summariseBattery,
  summariseEm,
  wilson,
  type AuditReport,
  type AuditRecord,
  type AuditComparison,
} from './report.ts';
